// Package httplimit keeps slow or greedy clients from starving the
// controller's HTTP listeners (the EC2 API and the node API): read,
// header, write and idle timeouts on the http.Server, and a listener that
// caps how many connections one client address holds at once, closing
// the ones past the cap as they arrive. A client that opens hundreds of
// connections and stalls them costs the others nothing but its own cap.
package httplimit
