// Package shacrypt makes SHA-512 crypt password hashes ("$6$salt$..."),
// the form /etc/shadow and PAM read, so the installer can give the
// installed frontend's root account the admin password without keeping
// the password itself.
package shacrypt
