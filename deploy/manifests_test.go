// Package deploy_test parses the Kubernetes manifests of deploy/ and the
// YAML examples of the docs into the Kubernetes API types, strictly (an
// unknown or misspelt field fails), and checks what scc relies on.
package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/sccontainers/scc/internal/nodeinstall"
	"github.com/sccontainers/scc/shim"
)

// installedScc is where the install image keeps the scc tool.
const installedScc = "/opt/scc/bin/scc"

// documents splits a multi-document YAML stream.
func documents(t *testing.T, data []byte) [][]byte {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		d, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(stripComments(d))) > 0 {
			docs = append(docs, d)
		}
	}
}

func stripComments(d []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(d, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// objects decodes every document of file into its typed API object.
func objects(t *testing.T, file string) []any {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var objs []any
	for i, d := range documents(t, data) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(d, &tm); err != nil {
			t.Fatalf("%s document %d: %v", file, i, err)
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 Namespace":
			obj = &corev1.Namespace{}
		case "v1 ServiceAccount":
			obj = &corev1.ServiceAccount{}
		case "rbac.authorization.k8s.io/v1 ClusterRole":
			obj = &rbacv1.ClusterRole{}
		case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
			obj = &rbacv1.ClusterRoleBinding{}
		case "apps/v1 DaemonSet":
			obj = &appsv1.DaemonSet{}
		case "node.k8s.io/v1 RuntimeClass":
			obj = &nodev1.RuntimeClass{}
		default:
			t.Fatalf("%s document %d: unexpected %s %s", file, i, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(d, obj); err != nil {
			t.Fatalf("%s document %d (%s): %v", file, i, tm.Kind, err)
		}
		objs = append(objs, obj)
	}
	return objs
}

func only[T any](t *testing.T, objs []any) T {
	t.Helper()
	var found []T
	for _, o := range objs {
		if v, ok := o.(T); ok {
			found = append(found, v)
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("%d objects of type %T, want 1", len(found), zero)
	}
	return found[0]
}

func TestRuntimeClass(t *testing.T) {
	objs := objects(t, "runtimeclass.yaml")
	if len(objs) != 1 {
		t.Fatalf("%d objects, want the RuntimeClass only", len(objs))
	}
	rc := only[*nodev1.RuntimeClass](t, objs)
	if rc.Name != "scc" || rc.Handler != nodeinstall.RuntimeName {
		t.Errorf("RuntimeClass %q with handler %q, want scc and %q", rc.Name, rc.Handler, nodeinstall.RuntimeName)
	}
	if rc.Overhead == nil {
		t.Fatal("no overhead")
	}
	mem, cpu := rc.Overhead.PodFixed[corev1.ResourceMemory], rc.Overhead.PodFixed[corev1.ResourceCPU]
	// The VM's base memory is not in any container's request: the
	// overhead must cover at least the shim's default.
	base := resource.NewQuantity(int64(shim.DefaultConfig().VM.MemoryMiB)<<20, resource.BinarySI)
	if mem.Cmp(*base) < 0 {
		t.Errorf("memory overhead %s below the default VM memory %s", mem.String(), base.String())
	}
	if cpu.Sign() <= 0 {
		t.Errorf("cpu overhead %s", cpu.String())
	}
	if rc.Scheduling == nil || rc.Scheduling.NodeSelector[nodeinstall.NodeLabel] != "true" {
		t.Errorf("scheduling %+v does not select %s=true", rc.Scheduling, nodeinstall.NodeLabel)
	}
}

func TestSccDeploy(t *testing.T) {
	objs := objects(t, "scc-deploy.yaml")
	ns := only[*corev1.Namespace](t, objs)
	sa := only[*corev1.ServiceAccount](t, objs)
	role := only[*rbacv1.ClusterRole](t, objs)
	binding := only[*rbacv1.ClusterRoleBinding](t, objs)
	ds := only[*appsv1.DaemonSet](t, objs)

	if sa.Namespace != ns.Name || ds.Namespace != ns.Name {
		t.Errorf("service account in %q, DaemonSet in %q, namespace %q", sa.Namespace, ds.Namespace, ns.Name)
	}
	// The role lets the pod label its node, and nothing else.
	if len(role.Rules) != 1 {
		t.Fatalf("role rules %+v", role.Rules)
	}
	r := role.Rules[0]
	if !slices.Equal(r.APIGroups, []string{""}) || !slices.Equal(r.Resources, []string{"nodes"}) || !slices.Contains(r.Verbs, "patch") {
		t.Errorf("role rule %+v does not allow patching nodes", r)
	}
	if slices.ContainsFunc(r.Verbs, func(v string) bool { return v == "*" || v == "delete" || v == "update" }) {
		t.Errorf("role rule %+v allows more than labelling", r)
	}
	if binding.RoleRef.Kind != "ClusterRole" || binding.RoleRef.Name != role.Name {
		t.Errorf("binding refers to %+v", binding.RoleRef)
	}
	if len(binding.Subjects) != 1 || binding.Subjects[0].Kind != "ServiceAccount" || binding.Subjects[0].Name != sa.Name || binding.Subjects[0].Namespace != sa.Namespace {
		t.Errorf("binding subjects %+v", binding.Subjects)
	}

	sel, err := metav1.LabelSelectorAsMap(ds.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range sel {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template's labels", k, v)
		}
	}
	pod := ds.Spec.Template.Spec
	if pod.ServiceAccountName != sa.Name {
		t.Errorf("service account %q", pod.ServiceAccountName)
	}
	if !pod.HostPID {
		t.Error("not hostPID")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("container not privileged")
	}

	// The host's root at /host.
	var hostVolume string
	for _, v := range pod.Volumes {
		if v.HostPath != nil && v.HostPath.Path == "/" {
			hostVolume = v.Name
		}
	}
	if hostVolume == "" {
		t.Fatal("no hostPath volume of /")
	}
	if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == hostVolume && m.MountPath == "/host" && !m.ReadOnly
	}) {
		t.Errorf("host root not mounted read-write at /host: %+v", c.VolumeMounts)
	}

	// The node name for --label-node.
	if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
		return e.Name == "NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
	}) {
		t.Error("no NODE_NAME from spec.nodeName")
	}

	start := strings.Join(append(slices.Clone(c.Command), c.Args...), " ")
	checkCommand(t, "start", start, "install")
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Exec == nil {
		t.Fatal("no preStop exec hook")
	}
	checkCommand(t, "preStop", strings.Join(c.Lifecycle.PreStop.Exec.Command, " "), "uninstall")
}

// checkCommand checks that script runs `scc verb` on the host root and
// labels (or unlabels) the pod's node.
func checkCommand(t *testing.T, what, script, verb string) {
	t.Helper()
	re := regexp.MustCompile(regexp.QuoteMeta(installedScc+" "+verb) + `((?: +--?[a-z-]+(?: +(?:"[^"]*"|[^ -][^ \n&;|]*))?)*)`)
	m := re.FindStringSubmatch(script)
	if m == nil {
		t.Fatalf("%s does not run %s %s: %q", what, installedScc, verb, script)
	}
	args := strings.Fields(m[1])
	flags := map[string]string{}
	for i := 0; i < len(args); i++ {
		if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			flags[strings.TrimLeft(args[i], "-")] = strings.Trim(args[i+1], `"`)
			i++
		}
	}
	if flags["root"] != "/host" {
		t.Errorf("%s: %s %s without --root /host: %q", what, installedScc, verb, m[0])
	}
	if flags["label-node"] != "$NODE_NAME" {
		t.Errorf("%s: %s %s without --label-node \"$NODE_NAME\": %q", what, installedScc, verb, m[0])
	}
}

// TestDocsYAML parses the YAML examples of the docs: Kubernetes objects
// strictly, Knative Services as they are, and checks that they use the
// scc RuntimeClass.
func TestDocsYAML(t *testing.T) {
	blocks := 0
	for _, doc := range []string{"kubernetes.md", "knative.md"} {
		md, err := os.ReadFile(filepath.Join("..", "docs", doc))
		if err != nil {
			t.Fatal(err)
		}
		for i, block := range fenced(md, "yaml") {
			for _, d := range documents(t, block) {
				blocks++
				var obj struct {
					APIVersion string         `json:"apiVersion"`
					Kind       string         `json:"kind"`
					Spec       map[string]any `json:"spec"`
				}
				if err := yaml.Unmarshal(d, &obj); err != nil {
					t.Fatalf("%s yaml block %d: %v", doc, i, err)
				}
				checkDocObject(t, doc, d, obj.APIVersion, obj.Kind, obj.Spec)
			}
		}
	}
	if blocks == 0 {
		t.Fatal("no YAML examples found in the docs")
	}
}

func checkDocObject(t *testing.T, doc string, d []byte, apiVersion, kind string, spec map[string]any) {
	t.Helper()
	switch apiVersion + " " + kind {
	case "v1 Pod":
		var p corev1.Pod
		if err := yaml.UnmarshalStrict(d, &p); err != nil {
			t.Fatalf("%s: Pod: %v", doc, err)
		}
		if p.Spec.RuntimeClassName == nil || *p.Spec.RuntimeClassName != "scc" {
			t.Errorf("%s: Pod %s not on the scc RuntimeClass", doc, p.Name)
		}
	case "node.k8s.io/v1 RuntimeClass":
		var rc nodev1.RuntimeClass
		if err := yaml.UnmarshalStrict(d, &rc); err != nil {
			t.Fatalf("%s: RuntimeClass: %v", doc, err)
		}
		if rc.Handler != nodeinstall.RuntimeName {
			t.Errorf("%s: handler %q", doc, rc.Handler)
		}
	case "serving.knative.dev/v1 Service":
		// The pod spec of a Knative Service is a Kubernetes pod spec.
		tmpl, _ := spec["template"].(map[string]any)
		b, err := yaml.Marshal(tmpl["spec"])
		if err != nil {
			t.Fatal(err)
		}
		var ps corev1.PodSpec
		if err := yaml.UnmarshalStrict(b, &ps); err != nil {
			t.Fatalf("%s: Knative Service pod spec: %v", doc, err)
		}
		if ps.RuntimeClassName == nil || *ps.RuntimeClassName != "scc" {
			t.Errorf("%s: Knative Service not on the scc RuntimeClass", doc)
		}
	case "v1 ConfigMap":
		var cm corev1.ConfigMap
		if err := yaml.UnmarshalStrict(d, &cm); err != nil {
			t.Fatalf("%s: ConfigMap: %v", doc, err)
		}
		if cm.Name == "config-features" && cm.Data["kubernetes.podspec-runtimeclassname"] != "enabled" {
			t.Errorf("%s: config-features does not enable kubernetes.podspec-runtimeclassname", doc)
		}
	default:
		t.Errorf("%s: unexpected example %s %s", doc, apiVersion, kind)
	}
}

// fenced returns the bodies of the markdown code blocks of a language.
func fenced(md []byte, lang string) [][]byte {
	var blocks [][]byte
	var cur *bytes.Buffer
	for _, l := range strings.Split(string(md), "\n") {
		switch {
		case cur == nil && strings.TrimSpace(l) == "```"+lang:
			cur = &bytes.Buffer{}
		case cur != nil && strings.TrimSpace(l) == "```":
			blocks = append(blocks, cur.Bytes())
			cur = nil
		case cur != nil:
			cur.WriteString(l + "\n")
		}
	}
	return blocks
}
