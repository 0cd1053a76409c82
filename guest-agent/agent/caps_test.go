package agent

import (
	"slices"
	"testing"
)

func TestWithinBounds(t *testing.T) {
	bounding := map[string]bool{"CAP_CHOWN": true, "CAP_SYS_ADMIN": true}
	got := withinBounds([]string{"CAP_CHOWN", "CAP_SYS_BOOT", "CAP_SYS_ADMIN", "CAP_SYS_MODULE", "CAP_FUTURE"}, bounding)
	if want := []string{"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_FUTURE"}; !slices.Equal(got, want) {
		t.Errorf("withinBounds = %v, want %v", got, want)
	}
	if got := withinBounds(nil, bounding); len(got) != 0 {
		t.Errorf("withinBounds(nil) = %v", got)
	}
}
