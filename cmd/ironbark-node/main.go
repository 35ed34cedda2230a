// Command ironbark-node is the node agent: it enrolls with the cloud
// controller and runs instances as libvirt domains. It links libvirt (cgo).
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "ironbark-node: not built yet (see issue: node agent)")
	os.Exit(1)
}
