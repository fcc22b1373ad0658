package main

// Dangling references: the API server accepts a pod that names a ConfigMap, Secret, claim or
// key that does not exist, and the pod then never starts (or, for an optional one, starts
// without the setting). kustomize renames generated ConfigMaps and Secrets with a content hash,
// so a reference it failed to rewrite shows up here. A $(VAR) that names no variable defined
// before it stays literal text in the value, so a database URL would name host "$(POSTGRES_HOST)".

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type workload struct {
	object
	replicas int32
	pod      *corev1.PodTemplateSpec
}

type index struct {
	objects   []object
	byKey     map[string]object
	external  map[string]bool // Kind/name
	workloads []workload
}

func key(kind, namespace, name string) string { return kind + "/" + namespace + "/" + name }

func newIndex(objects []object, external []string) *index {
	set := &index{objects: objects, byKey: map[string]object{}, external: map[string]bool{}}
	for _, e := range external {
		set.external[e] = true
	}
	for _, o := range objects {
		set.byKey[key(o.kind, o.namespace, o.name)] = o
		one := int32(1)
		switch obj := o.obj.(type) {
		case *appsv1.Deployment:
			set.workloads = append(set.workloads, workload{o, deref(obj.Spec.Replicas, one), &obj.Spec.Template})
		case *appsv1.StatefulSet:
			set.workloads = append(set.workloads, workload{o, deref(obj.Spec.Replicas, one), &obj.Spec.Template})
		case *batchv1.Job:
			set.workloads = append(set.workloads, workload{o, deref(obj.Spec.Parallelism, one), &obj.Spec.Template})
		}
	}
	return set
}

func deref(p *int32, fallback int32) int32 {
	if p == nil {
		return fallback
	}
	return *p
}

func (s *index) get(kind, namespace, name string) any {
	if o, ok := s.byKey[key(kind, namespace, name)]; ok {
		return o.obj
	}
	return nil
}

func (s *index) ofKind(kind, namespace string) []object {
	var out []object
	for _, o := range s.objects {
		if o.kind == kind && o.namespace == namespace {
			out = append(out, o)
		}
	}
	return out
}

func (s *index) selectedBy(namespace string, selector *metav1.LabelSelector) []workload {
	var out []workload
	for _, w := range s.workloads {
		if w.namespace == namespace && matches(selector, w.pod.Labels) {
			out = append(out, w)
		}
	}
	return out
}

// keys returns the keys of a ConfigMap or Secret, and whether its contents are known here: an
// external object exists but its keys cannot be checked. found is false for a dangling name.
func (s *index) keys(kind, namespace, name string) (keys map[string]bool, known, found bool) {
	keys = map[string]bool{}
	switch obj := s.get(kind, namespace, name).(type) {
	case *corev1.ConfigMap:
		for k := range obj.Data {
			keys[k] = true
		}
		for k := range obj.BinaryData {
			keys[k] = true
		}
		return keys, true, true
	case *corev1.Secret:
		for k := range obj.Data {
			keys[k] = true
		}
		for k := range obj.StringData {
			keys[k] = true
		}
		return keys, true, true
	}
	return keys, false, s.external[kind+"/"+name]
}

func checkVolumeRefs(found *problems, set *index, where within, namespace string, v corev1.Volume) {
	switch {
	case v.ConfigMap != nil:
		mustExist(found, set, where, namespace, "ConfigMap", v.ConfigMap.Name, v.ConfigMap.Optional)
	case v.Secret != nil:
		mustExist(found, set, where, namespace, "Secret", v.Secret.SecretName, v.Secret.Optional)
	case v.PersistentVolumeClaim != nil:
		mustExist(found, set, where, namespace, "PersistentVolumeClaim", v.PersistentVolumeClaim.ClaimName, nil)
	}
}

func mustExist(found *problems, set *index, where within, namespace, kind, name string, optional *bool) {
	if optional != nil && *optional {
		return
	}
	if _, _, ok := set.keys(kind, namespace, name); !ok && set.get(kind, namespace, name) == nil {
		found.add(where, "%s %q is not in these manifests (nor passed as -external %s/%s)", kind, name, kind, name)
	}
}

func checkEnvRefs(found *problems, set *index, where within, namespace string, c corev1.Container) {
	defined := map[string]bool{}
	complete := true // false once an envFrom source's keys cannot be known
	for _, from := range c.EnvFrom {
		kind, name, optional := "ConfigMap", "", (*bool)(nil)
		if from.ConfigMapRef != nil {
			name, optional = from.ConfigMapRef.Name, from.ConfigMapRef.Optional
		} else if from.SecretRef != nil {
			kind, name, optional = "Secret", from.SecretRef.Name, from.SecretRef.Optional
		}
		keys, known, ok := set.keys(kind, namespace, name)
		if !ok && !(optional != nil && *optional) {
			found.add(where, "envFrom %s %q is not in these manifests (nor passed as -external %s/%s)", kind, name, kind, name)
		}
		complete = complete && known
		for k := range keys {
			defined[from.Prefix+k] = true
		}
	}
	for _, e := range c.Env {
		if complete {
			for _, ref := range references(e.Value) {
				if !defined[ref] {
					found.add(where, "env %s: $(%s) is defined by no variable before it, so it stays literal", e.Name, ref)
				}
			}
		}
		defined[e.Name] = true
		if e.ValueFrom == nil {
			continue
		}
		kind, name, k, optional := "", "", "", (*bool)(nil)
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
			kind, name, k, optional = "ConfigMap", r.Name, r.Key, r.Optional
		} else if r := e.ValueFrom.SecretKeyRef; r != nil {
			kind, name, k, optional = "Secret", r.Name, r.Key, r.Optional
		} else {
			continue
		}
		keys, known, ok := set.keys(kind, namespace, name)
		switch {
		case optional != nil && *optional:
		case !ok:
			found.add(where, "env %s: %s %q is not in these manifests (nor passed as -external %s/%s)", e.Name, kind, name, kind, name)
		case known && !keys[k]:
			found.add(where, "env %s: %s %q has no key %q", e.Name, kind, name, k)
		}
	}
	if complete {
		for _, arg := range append(append([]string{}, c.Command...), c.Args...) {
			for _, ref := range references(arg) {
				if !defined[ref] {
					found.add(where, "command/args: $(%s) is not a variable of the container, so it stays literal", ref)
				}
			}
		}
	}
}

// references lists the $(NAME) expansions in s; $$ escapes a dollar, as in the kubelet.
func references(s string) []string {
	var refs []string
	for i := 0; i < len(s)-1; i++ {
		if s[i] != '$' {
			continue
		}
		if s[i+1] == '$' {
			i++
			continue
		}
		if s[i+1] == '(' {
			if end := strings.IndexByte(s[i+2:], ')'); end >= 0 {
				refs = append(refs, s[i+2:i+2+end])
				i += 2 + end
			}
		}
	}
	return refs
}
