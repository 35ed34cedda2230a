// Package bootapi holds the wire types between the frontend's HTTP boot
// server (package pxe) and the node installer (package installer): the
// install profile a node fetches and the progress reports it posts back.
// It has no logic and depends only on internal/nodeapi (for the node
// identity format) so the static installer stays small.
package bootapi
