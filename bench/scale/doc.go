// Package scale measures the controller at the sizes sites run: N
// simulated node agents in one process (internal/simnode: real node API
// clients with certificates of their own, heartbeating at the agent's
// interval, launches acknowledged as an agent would, no hypervisor) and M
// tenants driving the EC2 API with aws-sdk-go-v2, against a real
// `ironbark controller` process on SQLite or PostgreSQL. It reports
// RunInstances and DescribeInstances latencies, launch dispatch latency,
// heartbeats per second and the controller's CPU for them, its memory
// and the store's size, per size, so the growth shows as a curve.
//
// Run is one size on one store; Result.Check is what the test in this
// package asserts at a small size (every launch reached one node once,
// every heartbeat answered), never a timing. bench/scale/run prints the
// curve (cmd: scalebench).
package scale
