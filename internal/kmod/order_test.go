package kmod

import (
	"errors"
	"reflect"
	"slices"
	"testing"
)

func TestOrder(t *testing.T) {
	tests := []struct {
		name    string
		mods    map[string]Info
		want    []string
		out     []string
		wantErr error
	}{
		{
			name: "chain",
			mods: map[string]Info{
				"c": {Name: "c", Depends: []string{"b"}},
				"b": {Name: "b", Depends: []string{"a"}},
				"a": {Name: "a"},
				"z": {Name: "z"},
			},
			want: []string{"c"},
			out:  []string{"a", "b", "c"},
		},
		{
			name: "diamond",
			mods: map[string]Info{
				"top":   {Name: "top", Depends: []string{"right", "left"}},
				"left":  {Name: "left", Depends: []string{"base"}},
				"right": {Name: "right", Depends: []string{"base"}},
				"base":  {Name: "base"},
			},
			want: []string{"top"},
			out:  []string{"base", "left", "right", "top"},
		},
		{
			name: "several wanted, shared deps, dashes",
			mods: map[string]Info{
				"virtio":         {Name: "virtio"},
				"virtio_ring":    {Name: "virtio_ring"},
				"virtio_pci":     {Name: "virtio_pci", Depends: []string{"virtio_ring", "virtio"}},
				"virtio_console": {Name: "virtio_console", Depends: []string{"virtio_ring", "virtio"}},
			},
			want: []string{"virtio-pci", "virtio_console", "virtio_pci"},
			out:  []string{"virtio", "virtio_ring", "virtio_console", "virtio_pci"},
		},
		{
			name: "softdep on alias skips cpu-specific implementation",
			mods: map[string]Info{
				"erofs":          {Name: "erofs", Depends: []string{"libcrc32c"}},
				"libcrc32c":      {Name: "libcrc32c", SoftPre: []string{"crc32c"}},
				"crc32c_generic": {Name: "crc32c_generic", Aliases: []string{"crc32c_generic", "crc32c"}},
				"crc32c_intel":   {Name: "crc32c_intel", Aliases: []string{"crc32c", "cpu:type:x86,ven*fam*mod*:feature:*0094*"}},
			},
			want: []string{"erofs"},
			out:  []string{"crc32c_generic", "libcrc32c", "erofs"},
		},
		{
			name: "softdep on module name",
			mods: map[string]Info{
				"a":      {Name: "a", SoftPre: []string{"helper"}},
				"helper": {Name: "helper", Depends: []string{"base"}},
				"base":   {Name: "base"},
			},
			want: []string{"a"},
			out:  []string{"base", "helper", "a"},
		},
		{
			name: "unresolvable softdep is ignored",
			mods: map[string]Info{
				"a": {Name: "a", SoftPre: []string{"nowhere", "a"}},
			},
			want: []string{"a"},
			out:  []string{"a"},
		},
		{
			name: "cycle through a softdep is ignored",
			mods: map[string]Info{
				"a": {Name: "a", Depends: []string{"b"}},
				"b": {Name: "b", SoftPre: []string{"a"}},
			},
			want: []string{"a"},
			out:  []string{"b", "a"},
		},
		{
			name:    "missing wanted module",
			mods:    map[string]Info{"a": {Name: "a"}},
			want:    []string{"a", "b"},
			wantErr: ErrMissing,
		},
		{
			name: "missing dependency",
			mods: map[string]Info{
				"a": {Name: "a", Depends: []string{"gone"}},
			},
			want:    []string{"a"},
			wantErr: ErrMissing,
		},
		{
			name: "hard cycle",
			mods: map[string]Info{
				"a": {Name: "a", Depends: []string{"b"}},
				"b": {Name: "b", Depends: []string{"c"}},
				"c": {Name: "c", Depends: []string{"a"}},
			},
			want:    []string{"a"},
			wantErr: ErrCycle,
		},
		{
			name:    "self dependency",
			mods:    map[string]Info{"a": {Name: "a", Depends: []string{"a"}}},
			want:    []string{"a"},
			wantErr: ErrCycle,
		},
		{
			name: "nothing wanted",
			mods: map[string]Info{"a": {Name: "a"}},
			want: nil,
			out:  nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Order(tt.mods, tt.want)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Order() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Order() error = %v", err)
			}
			if !reflect.DeepEqual(got, tt.out) {
				t.Errorf("Order() = %q, want %q", got, tt.out)
			}
			assertTopological(t, tt.mods, got)

			// The order must not depend on the order of the wanted list.
			rev := slices.Clone(tt.want)
			slices.Reverse(rev)
			again, err := Order(tt.mods, rev)
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Errorf("Order(reversed want) = %q, %v; want %q", again, err, got)
			}
		})
	}
}

// assertTopological checks that every hard dependency precedes its user.
func assertTopological(t *testing.T, mods map[string]Info, order []string) {
	t.Helper()
	pos := map[string]int{}
	for i, m := range order {
		if _, dup := pos[m]; dup {
			t.Errorf("module %s listed twice", m)
		}
		pos[m] = i
	}
	for _, m := range order {
		for _, d := range mods[m].Depends {
			if p, ok := pos[d]; !ok || p > pos[m] {
				t.Errorf("dependency %s of %s is missing or comes after it in %q", d, m, order)
			}
		}
	}
}
