package imagesplit

import (
	"context"
	"errors"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestRules(t *testing.T) {
	base := []v1.Layer{
		tarLayer(t, "bin/", "", "bin/sh", "shell"),
		tarLayer(t, "etc/hosts", "localhost"),
	}
	app := tarLayer(t, "app/", "", "app/run", "secret code")
	apple := tarLayer(t, "apple/x", "not app")
	whiteout := tarLayer(t, "app/.wh.old", "")
	layers := append(slices.Clone(base), app, apple, whiteout)
	baseImg := testImage(t, base...)
	otherBase := testImage(t, tarLayer(t, "other", "x"))

	above, err := AboveBase(baseImg)
	if err != nil {
		t.Fatal(err)
	}
	wrongBase, err := AboveBase(otherBase)
	if err != nil {
		t.Fatal(err)
	}
	tallBase, err := AboveBase(testImage(t, append(slices.Clone(layers), tarLayer(t, "z", "z"))...))
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		rule    Rule
		want    []bool
		wantErr error
	}{
		{"index none", ByIndex(nil), []bool{false, false, false, false, false}, nil},
		{"index 2 and 4", ByIndex{2, 4}, []bool{false, false, true, false, true}, nil},
		{"index out of range", ByIndex{5}, nil, ErrNoSuchLayer},
		{"index negative", ByIndex{-1}, nil, ErrNoSuchLayer},
		{"prefix /app", ByPathPrefix{"/app"}, []bool{false, false, true, false, true}, nil},
		{"prefix app/run without slash", ByPathPrefix{"app/run"}, []bool{false, false, true, false, false}, nil},
		{"prefix two", ByPathPrefix{"/etc", "/apple"}, []bool{false, true, false, true, false}, nil},
		{"prefix nothing", ByPathPrefix{"/opt"}, []bool{false, false, false, false, false}, nil},
		{"above base", above, []bool{false, false, true, true, true}, nil},
		{"above other base", wrongBase, nil, ErrNotOnBase},
		{"base taller than image", tallBase, nil, ErrNotOnBase},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.rule.Select(context.Background(), layers)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestByPathPrefixRejectsRoot(t *testing.T) {
	if _, err := (ByPathPrefix{"/"}).Select(context.Background(), []v1.Layer{tarLayer(t, "a", "b")}); err == nil {
		t.Error("prefix / accepted")
	}
}
