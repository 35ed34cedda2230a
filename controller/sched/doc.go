// Package sched holds the placement policies of a cluster, as Eucalyptus
// defines them: GREEDY (the first node that fits), ROUNDROBIN (rotate over
// the nodes that fit) and POWERSAVE (pack onto nodes already running
// instances, so idle ones can be powered down). A policy only chooses among
// candidates it is given; capacity bookkeeping is the caller's.
package sched
