package clh

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// specPath is cloud-hypervisor's API description (see testdata/README.md).
const specPath = "testdata/cloud-hypervisor-api.yaml"

// apiSpec validates requests and responses against the API description.
type apiSpec struct {
	doc    *openapi3.T
	router routers.Router
}

// loadSpec loads the API description. With strict set, every object schema
// that lists its properties also refuses others: the description leaves
// additionalProperties open, but cloud-hypervisor rejects unknown fields,
// and a misspelt one ("initrd" for "initramfs") must fail the tests rather
// than be dropped silently.
func loadSpec(strict bool) (*apiSpec, error) {
	doc, err := openapi3.NewLoader().LoadFromFile(specPath)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", specPath, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("%s: %w", specPath, err)
	}
	if strict {
		no := false
		for _, ref := range doc.Components.Schemas {
			s := ref.Value
			if s.Type.Is("object") && len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
				s.AdditionalProperties.Has = &no
			}
		}
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, err
	}
	return &apiSpec{doc: doc, router: router}, nil
}

// validateRequest checks r (whose body it leaves readable) against the
// description and returns the route it matched.
func (s *apiSpec) validateRequest(r *http.Request) (*openapi3filter.RequestValidationInput, error) {
	route, params, err := s.router.FindRoute(r)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err)
	}
	in := &openapi3filter.RequestValidationInput{
		Request:    r,
		PathParams: params,
		Route:      route,
		Options:    &openapi3filter.Options{MultiError: true},
	}
	if err := openapi3filter.ValidateRequest(r.Context(), in); err != nil {
		return nil, fmt.Errorf("%s %s: %w", r.Method, r.URL.Path, err)
	}
	return in, nil
}

// validateResponse checks an answer the fake server is about to give.
func (s *apiSpec) validateResponse(in *openapi3filter.RequestValidationInput, status int, body []byte) error {
	h := http.Header{}
	if len(body) > 0 {
		h.Set("Content-Type", "application/json")
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 status,
		Header:                 h,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	out.SetBodyBytes(body)
	return openapi3filter.ValidateResponse(context.Background(), out)
}

// validateBody checks body as the request of PUT /<endpoint>.
func (s *apiSpec) validateBody(endpoint string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	r := httptest.NewRequest(http.MethodPut, apiBase+endpoint, bytes.NewReader(b))
	r.Header.Set("Content-Type", "application/json")
	_, err = s.validateRequest(r)
	return err
}

func mustSpec(t *testing.T) *apiSpec {
	t.Helper()
	s, err := loadSpec(true)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The validator must catch what cloud-hypervisor would refuse, or passing
// it proves nothing.
func TestSpecRejectsBadBodies(t *testing.T) {
	s := mustSpec(t)
	good := `{"cpus":{"boot_vcpus":1,"max_vcpus":1},"memory":{"size":536870912},"payload":{"kernel":"/k"},"serial":{"mode":"File","file":"/c"},"console":{"mode":"Off"}}`
	tests := []struct {
		name, endpoint, body string
		ok                   bool
	}{
		{"good create", "vm.create", good, true},
		{"missing payload", "vm.create", `{"cpus":{"boot_vcpus":1,"max_vcpus":1}}`, false},
		{"missing max_vcpus", "vm.create", strings.Replace(good, `,"max_vcpus":1`, ``, 1), false},
		{"zero vcpus", "vm.create", strings.Replace(good, `"boot_vcpus":1`, `"boot_vcpus":0`, 1), false},
		{"memory as string", "vm.create", strings.Replace(good, `536870912`, `"512M"`, 1), false},
		{"unknown console mode", "vm.create", strings.Replace(good, `"Off"`, `"Virtio"`, 1), false},
		{"misspelt field", "vm.create", strings.Replace(good, `"kernel"`, `"initrd":"/i","kernel"`, 1), false},
		{"vsock cid below 3", "vm.create", strings.Replace(good, `"payload"`, `"vsock":{"cid":2,"socket":"/v"},"payload"`, 1), false},
		{"snapshot", "vm.snapshot", `{"destination_url":"file:///s"}`, true},
		{"restore without source", "vm.restore", `{"prefault":true}`, false},
		{"unknown endpoint", "vm.frobnicate", `{}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPut, apiBase+tt.endpoint, strings.NewReader(tt.body))
			r.Header.Set("Content-Type", "application/json")
			_, err := s.validateRequest(r)
			if tt.ok != (err == nil) {
				t.Errorf("validate %s = %v, want ok=%v", tt.body, err, tt.ok)
			}
		})
	}
}

// readBody returns r's body and puts it back for the validator.
func readBody(r *http.Request) []byte {
	b, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(b))
	return b
}
