// Package sshkeys reads OpenSSH authorized_keys text (the
// ssh_authorized_keys attribute, an installed root's
// ~/.ssh/authorized_keys) and merges key lists without duplicates. It is
// pure: parse and format, no I/O, so the frontend (checking the attribute
// when it is set and when it is served) and the static node installer
// (writing the keys on the installed disk) share one reading.
package sshkeys
