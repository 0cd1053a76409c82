package kmod

import (
	"reflect"
	"testing"
)

func TestParseList(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []listEntry
	}{
		{
			name: "paths and params",
			data: "# load order\nlib/modules/6.1/kernel/a.ko\n\n  lib/modules/6.1/kernel/b.ko   debug=1 x=y \nc.ko\tfoo=bar\n",
			want: []listEntry{
				{path: "lib/modules/6.1/kernel/a.ko"},
				{path: "lib/modules/6.1/kernel/b.ko", params: "debug=1 x=y"},
				{path: "c.ko", params: "foo=bar"},
			},
		},
		{name: "empty", data: "", want: nil},
		{name: "comments only", data: "#a\n# b\n", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseList([]byte(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseList() = %+v, want %+v", got, tt.want)
			}
		})
	}
}
