// Package pki is the cloud's private certificate authority: a CA kept in
// DATA/pki, the server certificate of the controller's node listener, and
// the client certificates node agents get on enrollment. Keys are ECDSA
// P-256. Node keys are made on the node and never leave it: the agent sends
// a CSR with its enrollment token and gets the signed certificate back.
//
// The node listener asks for client certificates signed by the CA; a node's
// certificate carries its node ID as CommonName. Agents verify the server
// against the CA (chain and server-auth usage, not the host name: the CA is
// private to one cloud and issues server-auth certificates only to its
// controllers, so agents can reach the controller under any address).
package pki
