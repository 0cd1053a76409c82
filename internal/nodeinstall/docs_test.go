package nodeinstall

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestDocsContainerdSnippets checks that the containerd configs shown in
// docs/kubernetes.md are what install writes (with the confidential
// handler where they show it), and that containerd loads them with the
// runtimes where its CRI plugin looks.
func TestDocsContainerdSnippets(t *testing.T) {
	md, err := os.ReadFile("../../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	seenConfidential := false
	sandboxers := 0
	for _, block := range tomlBlocks(string(md)) {
		doc, err := parseTOML([]byte(block))
		if err != nil {
			t.Fatalf("docs TOML does not parse: %v\n%s", err, block)
		}
		v, _ := doc["version"].(int64)
		if v == 0 {
			continue // a fragment, such as enable_annotations
		}
		seen[v] = true
		// The sandboxer mode's snippet is install's with --sandboxer shim.
		rt, _ := lookup(doc, runtimePath(criPlugin(int(v)), RuntimeName)...)
		sandboxer, _ := lookup(doc, append(runtimePath(criPlugin(int(v)), RuntimeName), "sandboxer")...)
		if rt == nil {
			t.Fatalf("docs TOML of version %d without the scc runtime:\n%s", v, block)
		}
		opts := RuntimeOptions{
			ShimPath:   DefaultBinDir + "/" + ShimBinary,
			ConfigPath: DefaultConfigPath,
			NewVersion: int(v),
		}
		if strings.Contains(block, ConfidentialRuntimeName) {
			opts.Confidential = &ConfidentialOptions{ConfigPath: "/etc/scc/confidential.toml", Platform: "linux/amd64"}
		}
		opts.Sandboxer, _ = sandboxer.(string)
		if opts.Sandboxer != "" {
			sandboxers++
		}
		installed, err := AddRuntime(nil, false, opts)
		if err != nil {
			t.Fatal(err)
		}
		want, err := parseTOML(installed)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(doc, want) {
			t.Errorf("docs show for version %d\n%s\ninstall writes\n%s", v, block, installed)
		}
		checkLoads(t, []byte(block), criPlugin(int(v)), v, RuntimeOptions{ShimPath: DefaultBinDir + "/" + ShimBinary, ConfigPath: DefaultConfigPath, Sandboxer: opts.Sandboxer})
		if opts.Confidential != nil {
			seenConfidential = true
			checkConfidential(t, []byte(block), criPlugin(int(v)), opts.Confidential.ConfigPath, []string{"overlayfs", "scc"})
		}
	}
	if !seen[2] || !seen[3] {
		t.Errorf("docs show config versions %v, want 2 and 3", seen)
	}
	if !seenConfidential {
		t.Errorf("docs show no config with the %s handler", ConfidentialRuntimeName)
	}
	if sandboxers == 0 {
		t.Error("docs show no config with the shim as sandboxer")
	}
}

func tomlBlocks(md string) []string {
	var blocks []string
	var cur *strings.Builder
	for _, l := range strings.Split(md, "\n") {
		switch {
		case cur == nil && strings.TrimSpace(l) == "```toml":
			cur = &strings.Builder{}
		case cur != nil && strings.TrimSpace(l) == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(l + "\n")
		}
	}
	return blocks
}
