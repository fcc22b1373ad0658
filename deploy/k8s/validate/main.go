// Command validate checks rendered Kubernetes manifests offline: `kustomize build … | validate`.
//
// Each document on stdin is decoded strictly into its k8s.io/api type, as an API server's strict
// field validation would: an unknown kind or apiVersion, an unknown or duplicated field, or a
// value of the wrong type is refused. Then the set is checked as a whole against the rules
// Leadline deploys by (policy.go) and for dangling references (refs.go). Every problem is printed
// on stderr, one per line; the exit status is 1 if there was any, 2 if stdin was unreadable.
//
// The strict decoding is only as good as the types it decodes into: k8s.io/api's version in
// go.mod is the schema, so bump it with the oldest cluster version you deploy to in mind.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	serializerjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// object is one decoded document with what the checks need to name it.
type object struct {
	kind      string
	namespace string
	name      string
	obj       runtime.Object
}

func (o object) String() string {
	if o.namespace == "" {
		return o.kind + " " + o.name
	}
	return o.kind + " " + o.namespace + "/" + o.name
}

// problems collects findings; each is one line of output.
type problems []string

func (p *problems) add(where fmt.Stringer, format string, args ...any) {
	*p = append(*p, where.String()+": "+fmt.Sprintf(format, args...))
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	var external stringList
	flag.Var(&external, "external", "Kind/name provided outside these manifests, e.g. Secret/leadline-secrets (repeatable)")
	flag.Parse()

	objects, found, err := decodeAll(os.Stdin)
	if err != nil {
		fmt.Fprintf(os.Stderr, "k8s-validate: %v\n", err)
		os.Exit(2)
	}
	if len(objects) == 0 {
		found.add(stdin{}, "no objects: nothing was rendered")
	}
	set := newIndex(objects, external)
	for _, o := range objects {
		checkObject(&found, set, o)
	}
	checkDisruptionBudgets(&found, set)

	if len(found) > 0 {
		for _, p := range found {
			fmt.Fprintf(os.Stderr, "k8s-validate: %s\n", p)
		}
		fmt.Fprintf(os.Stderr, "k8s-validate: %d problem(s) in %d object(s)\n", len(found), len(objects))
		os.Exit(1)
	}
	fmt.Printf("k8s-validate: %d object(s) ok: %s\n", len(objects), summary(objects))
}

type stdin struct{}

func (stdin) String() string { return "stdin" }

type document int

func (d document) String() string { return fmt.Sprintf("document %d", int(d)) }

// decodeAll reads every YAML document; a document that does not decode strictly is a problem,
// not an error, so that one run reports all of them.
func decodeAll(r io.Reader) ([]object, problems, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, policyv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return nil, nil, err
		}
	}
	// The serializer an API server uses for strict field validation: unknown and duplicate
	// fields are errors, field names are case-sensitive (encoding/json alone would accept
	// `Replicas` for `replicas`).
	codec := serializerjson.NewSerializerWithOptions(
		serializerjson.DefaultMetaFactory, scheme, scheme,
		serializerjson.SerializerOptions{Yaml: true, Strict: true},
	)

	var objects []object
	var found problems
	reader := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for n := 1; ; n++ {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objects, found, nil
		}
		if err != nil {
			return nil, nil, err
		}
		if isEmpty(raw) {
			n--
			continue
		}
		obj, gvk, err := codec.Decode(raw, nil, nil)
		var where fmt.Stringer = document(n)
		if gvk != nil && gvk.Kind != "" {
			where = describe(n, gvk.GroupVersion().String(), gvk.Kind, obj)
		}
		switch {
		case err == nil:
		case runtime.IsStrictDecodingError(err):
			// obj is fully decoded; every unknown or duplicate field is listed
			strict, _ := runtime.AsStrictDecodingError(err)
			for _, e := range strict.Errors() {
				found.add(where, "%s", e)
			}
		case runtime.IsNotRegisteredError(err):
			found.add(where, "unknown kind or apiVersion: only the core/v1, apps/v1, batch/v1 and policy/v1 kinds are known")
			continue
		default:
			found.add(where, "%v", err)
			continue
		}
		meta, ok := obj.(metav1.Object)
		if !ok {
			found.add(where, "not an object with metadata")
			continue
		}
		objects = append(objects, object{kind: gvk.Kind, namespace: meta.GetNamespace(), name: meta.GetName(), obj: obj})
	}
}

func isEmpty(raw []byte) bool {
	for _, line := range bytes.Split(raw, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' && string(line) != "---" {
			return false
		}
	}
	return true
}

type described string

func (d described) String() string { return string(d) }

func describe(n int, apiVersion, kind string, obj runtime.Object) fmt.Stringer {
	if meta, ok := obj.(metav1.Object); ok && meta.GetName() != "" {
		return object{kind: kind, namespace: meta.GetNamespace(), name: meta.GetName()}
	}
	return described(fmt.Sprintf("document %d (%s %s)", n, apiVersion, kind))
}

func summary(objects []object) string {
	counts := map[string]int{}
	for _, o := range objects {
		counts[o.kind]++
	}
	var parts []string
	for kind, n := range counts {
		parts = append(parts, fmt.Sprintf("%d %s", n, kind))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}
