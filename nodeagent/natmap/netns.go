package natmap

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNetNS runs fn on a thread switched into the namespace nsfd (0: right
// here): a packet socket, and what /proc/sys/net shows, belong to the
// namespace of the thread that opens them.
func inNetNS(nsfd int, fn func() error) error {
	if nsfd <= 0 {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(netns.NsHandle(nsfd)); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		errc <- fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked and ends with the goroutine
	}()
	return <-errc
}
