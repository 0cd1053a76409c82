package agent

import (
	"slices"
	"strings"
	"sync"

	"github.com/moby/sys/capability"
)

// boundingSet returns the names ("CAP_SYS_ADMIN") of the capabilities
// the agent's bounding set holds. The guest's monitor starts the agent
// without some (CAP_SYS_BOOT, CAP_SYS_MODULE, CAP_SYS_RAWIO), so that no
// container can have them.
var boundingSet = sync.OnceValue(func() map[string]bool {
	set := map[string]bool{}
	for _, c := range capability.ListKnown() {
		if ok, err := capability.GetBound(c); err == nil && ok {
			set[capName(c)] = true
		}
	}
	return set
})

// knownCaps are the names of the capabilities the agent knows.
var knownCaps = sync.OnceValue(func() map[string]bool {
	set := map[string]bool{}
	for _, c := range capability.ListKnown() {
		set[capName(c)] = true
	}
	return set
})

// capName is a capability's name as the OCI spec writes it.
func capName(c capability.Cap) string { return "CAP_" + strings.ToUpper(c.String()) }

// withinBounds drops from caps those known capabilities the agent's
// bounding set lacks. A container asking for all capabilities (a
// privileged one) gets all the guest allows rather than failing to
// start: no process can gain a capability its parent's bounding set
// lacks. Names the agent does not know are left to libcontainer.
func withinBounds(caps []string, bounding map[string]bool) []string {
	known := knownCaps()
	return slices.DeleteFunc(slices.Clone(caps), func(c string) bool {
		return known[c] && !bounding[c]
	})
}
