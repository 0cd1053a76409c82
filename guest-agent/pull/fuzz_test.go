package pull

import (
	"strings"
	"testing"
)

// FuzzKeyReference parses the key annotation an untrusted registry
// serves: it must either fail or give a three-part resource path.
func FuzzKeyReference(f *testing.F) {
	for _, s := range []string{
		b64(`{"kid":"kbs:///default/key/app","wrapped_data":"","iv":"","wrap_type":"A256GCM"}`),
		b64(`{"kid":"kbs://h/a/b/c"}`), b64(`{"kid":"kbs:///../../x"}`), "!!", b64("[]"),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, packet string) {
		_, path, err := keyReference(packet)
		if err != nil {
			return
		}
		if p := strings.Split(path, "/"); len(p) != 3 || p[0] == "" || p[1] == "" || p[2] == "" {
			t.Fatalf("path %q accepted", path)
		}
	})
}
