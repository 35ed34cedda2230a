// Package ra sends IPv6 Router Advertisements with router lifetime 0 on
// the PXE interface, periodically and in answer to Router Solicitations.
//
// Why: iPXE configures IPv6 alongside IPv4 and waits about 15 s for a
// router before giving up (measured in the lab, ../shared/LAB.md). An
// advertisement that says "I am not a default router" (lifetime 0), with
// no prefixes and neither M nor O set, ends that wait at once without
// giving the nodes any IPv6 route or address. Built on
// github.com/mdlayher/ndp.
package ra
