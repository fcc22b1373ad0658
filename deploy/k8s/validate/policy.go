package main

// The rules Leadline deploys by, beyond what the API server itself would refuse:
//   - every container of a long-running workload is probed: liveness on /health/live, readiness
//     on /health/ready (shared/http/health.py), on a port the container declares;
//   - every container has CPU and memory requests and limits, request <= limit;
//   - every pod meets the restricted Pod Security Standard's core (non-root with a numeric uid,
//     no privilege escalation, all capabilities dropped, a seccomp profile), so the local
//     namespace that enforces it admits them;
//   - images are pinned: a tag other than `latest`, or a digest;
//   - service links are off: they inject <SERVICE>_PORT=tcp://… variables, and our settings read
//     the environment by prefix;
//   - every Deployment and StatefulSet (each one is a Kafka consumer) is covered by exactly one
//     PodDisruptionBudget that lets a drain proceed.

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

const (
	livePath  = "/health/live"
	readyPath = "/health/ready"
)

// within names a part of an object in a problem.
type within struct {
	parent fmt.Stringer
	part   string
}

func (w within) String() string { return w.parent.String() + ": " + w.part }

func checkObject(found *problems, set *index, o object) {
	for _, msg := range validation.IsDNS1123Subdomain(o.name) {
		found.add(o, "metadata.name %q: %s", o.name, msg)
	}
	switch obj := o.obj.(type) {
	case *appsv1.Deployment:
		checkSelector(found, o, obj.Spec.Selector, obj.Spec.Template.Labels)
		checkPod(found, set, o, &obj.Spec.Template.Spec, true, nil)
	case *appsv1.StatefulSet:
		checkSelector(found, o, obj.Spec.Selector, obj.Spec.Template.Labels)
		var claims []string
		for _, c := range obj.Spec.VolumeClaimTemplates {
			claims = append(claims, c.Name)
		}
		checkPod(found, set, o, &obj.Spec.Template.Spec, true, claims)
		governing, ok := set.get("Service", o.namespace, obj.Spec.ServiceName).(*corev1.Service)
		if !ok {
			found.add(o, "spec.serviceName %q names no Service here", obj.Spec.ServiceName)
		} else if governing.Spec.ClusterIP != corev1.ClusterIPNone {
			found.add(o, "spec.serviceName %q is not a headless Service (clusterIP: None)", obj.Spec.ServiceName)
		}
	case *batchv1.Job:
		checkPod(found, set, o, &obj.Spec.Template.Spec, false, nil)
	case *corev1.Pod:
		found.add(o, "a bare Pod is never rescheduled: use a Deployment, StatefulSet or Job")
	case *corev1.Service:
		checkService(found, set, o, obj)
	case *policyv1.PodDisruptionBudget:
		if (obj.Spec.MinAvailable == nil) == (obj.Spec.MaxUnavailable == nil) {
			found.add(o, "set exactly one of spec.minAvailable and spec.maxUnavailable")
		}
		if len(set.selectedBy(o.namespace, obj.Spec.Selector)) == 0 {
			found.add(o, "spec.selector matches no workload's pods")
		}
	}
}

func checkSelector(found *problems, o object, selector *metav1.LabelSelector, podLabels map[string]string) {
	s, err := metav1.LabelSelectorAsSelector(selector)
	switch {
	case selector == nil:
		found.add(o, "spec.selector is required")
	case err != nil:
		found.add(o, "spec.selector: %v", err)
	case s.Empty():
		found.add(o, "spec.selector is empty: it would select every pod in the namespace")
	case !s.Matches(labels.Set(podLabels)):
		found.add(o, "spec.selector does not match the pod template's labels")
	}
}

func checkPod(found *problems, set *index, o object, pod *corev1.PodSpec, longRunning bool, claims []string) {
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		found.add(o, "spec.template.spec.enableServiceLinks must be false: service links inject <SERVICE>_PORT… variables and our settings read the environment by prefix")
	}
	volumes := map[string]bool{}
	for _, name := range claims {
		volumes[name] = true
	}
	for _, v := range pod.Volumes {
		volumes[v.Name] = true
		checkVolumeRefs(found, set, within{o, "volume " + v.Name}, o.namespace, v)
	}
	for _, c := range pod.InitContainers {
		checkContainer(found, set, o, pod, c, false, volumes)
	}
	for _, c := range pod.Containers {
		checkContainer(found, set, o, pod, c, longRunning, volumes)
	}
}

func checkContainer(found *problems, set *index, o object, pod *corev1.PodSpec, c corev1.Container, probed bool, volumes map[string]bool) {
	where := within{o, "container " + c.Name}
	checkImage(found, where, c.Image)
	checkResources(found, where, c.Resources)
	checkSecurity(found, where, pod.SecurityContext, c.SecurityContext)
	if probed {
		checkProbe(found, where, "livenessProbe", c.LivenessProbe, livePath, c.Ports)
		checkProbe(found, where, "readinessProbe", c.ReadinessProbe, readyPath, c.Ports)
	}
	for _, m := range c.VolumeMounts {
		if !volumes[m.Name] {
			found.add(where, "volumeMount %q names no volume of the pod", m.Name)
		}
	}
	checkEnvRefs(found, set, where, o.namespace, c)
}

func checkImage(found *problems, where fmt.Stringer, image string) {
	if image == "" {
		found.add(where, "no image")
		return
	}
	if strings.Contains(image, "@sha256:") {
		return
	}
	name := image[strings.LastIndex(image, "/")+1:]
	i := strings.LastIndex(name, ":")
	switch {
	case i < 0:
		found.add(where, "image %q has no tag, which means :latest: pin a version", image)
	case name[i+1:] == "latest":
		found.add(where, "image %q: :latest is not a version, pin one", image)
	}
}

func checkResources(found *problems, where fmt.Stringer, r corev1.ResourceRequirements) {
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := r.Requests[res]
		limit, hasLimit := r.Limits[res]
		if !hasReq || req.IsZero() {
			found.add(where, "resources.requests.%s is required", res)
		}
		if !hasLimit || limit.IsZero() {
			found.add(where, "resources.limits.%s is required", res)
		}
		if hasReq && hasLimit && req.Cmp(limit) > 0 {
			found.add(where, "resources.requests.%s %s exceeds its limit %s", res, req.String(), limit.String())
		}
	}
}

// checkSecurity applies the container's settings over the pod's, as the kubelet does.
func checkSecurity(found *problems, where fmt.Stringer, pod *corev1.PodSecurityContext, c *corev1.SecurityContext) {
	if pod == nil {
		pod = &corev1.PodSecurityContext{}
	}
	if c == nil {
		c = &corev1.SecurityContext{}
	}
	nonRoot, uid, seccomp := pod.RunAsNonRoot, pod.RunAsUser, pod.SeccompProfile
	if c.RunAsNonRoot != nil {
		nonRoot = c.RunAsNonRoot
	}
	if c.RunAsUser != nil {
		uid = c.RunAsUser
	}
	if c.SeccompProfile != nil {
		seccomp = c.SeccompProfile
	}
	if nonRoot == nil || !*nonRoot {
		found.add(where, "runAsNonRoot must be true (pod or container securityContext)")
	}
	// the kubelet cannot verify a named USER is not root, and refuses to start the container
	if uid == nil || *uid == 0 {
		found.add(where, "runAsUser must be a non-zero uid (pod or container securityContext)")
	}
	if c.AllowPrivilegeEscalation == nil || *c.AllowPrivilegeEscalation {
		found.add(where, "securityContext.allowPrivilegeEscalation must be false")
	}
	if c.Privileged != nil && *c.Privileged {
		found.add(where, "securityContext.privileged is refused")
	}
	dropsAll := false
	if c.Capabilities != nil {
		for _, cap := range c.Capabilities.Drop {
			dropsAll = dropsAll || cap == "ALL"
		}
	}
	if !dropsAll {
		found.add(where, "securityContext.capabilities.drop must include ALL")
	}
	if seccomp == nil || (seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost) {
		found.add(where, "seccompProfile must be RuntimeDefault or Localhost (pod or container securityContext)")
	}
}

func checkProbe(found *problems, where fmt.Stringer, field string, p *corev1.Probe, path string, ports []corev1.ContainerPort) {
	if p == nil {
		found.add(where, "no %s: it must be an httpGet on %s", field, path)
		return
	}
	if p.HTTPGet == nil {
		found.add(where, "%s must be an httpGet on %s", field, path)
		return
	}
	if p.HTTPGet.Path != path {
		found.add(where, "%s.httpGet.path is %q, want %q", field, p.HTTPGet.Path, path)
	}
	if !declaresPort(ports, p.HTTPGet.Port) {
		found.add(where, "%s.httpGet.port %s is not a port the container declares", field, p.HTTPGet.Port.String())
	}
}

func declaresPort(ports []corev1.ContainerPort, port intstr.IntOrString) bool {
	for _, p := range ports {
		if (port.Type == intstr.String && p.Name == port.StrVal) ||
			(port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
			return true
		}
	}
	return false
}

func checkService(found *problems, set *index, o object, svc *corev1.Service) {
	for _, msg := range validation.IsDNS1035Label(o.name) {
		found.add(o, "a Service name must be a DNS-1035 label: %s", msg)
	}
	if len(svc.Spec.Selector) == 0 {
		found.add(o, "spec.selector is empty: no pods would ever back it")
		return
	}
	pods := set.selectedBy(o.namespace, &metav1.LabelSelector{MatchLabels: svc.Spec.Selector})
	if len(pods) == 0 {
		found.add(o, "spec.selector matches no workload's pods")
	}
	for _, port := range svc.Spec.Ports {
		if port.TargetPort.Type != intstr.String {
			continue
		}
		for _, w := range pods {
			declared := false
			for _, c := range w.pod.Spec.Containers {
				declared = declared || declaresPort(c.Ports, port.TargetPort)
			}
			if !declared {
				found.add(o, "port %q: targetPort %q is not a port of %s", port.Name, port.TargetPort.StrVal, w.object)
			}
		}
	}
}

// checkDisruptionBudgets: every long-running workload here consumes from Kafka, and evicting
// all of a group's members at once stops the partition's processing.
func checkDisruptionBudgets(found *problems, set *index) {
	for _, w := range set.workloads {
		if w.kind == "Job" {
			continue
		}
		var budgets []*policyv1.PodDisruptionBudget
		for _, o := range set.ofKind("PodDisruptionBudget", w.namespace) {
			pdb := o.obj.(*policyv1.PodDisruptionBudget)
			if matches(pdb.Spec.Selector, w.pod.Labels) {
				budgets = append(budgets, pdb)
			}
		}
		switch {
		case len(budgets) == 0:
			found.add(w.object, "no PodDisruptionBudget selects its pods: a node drain may evict every consumer of its group at once")
		case len(budgets) > 1:
			found.add(w.object, "%d PodDisruptionBudgets select its pods: the eviction API then refuses to evict them at all", len(budgets))
		default:
			if blocksEviction(budgets[0], w.replicas) {
				found.add(w.object, "PodDisruptionBudget %s allows no eviction with %d replica(s): node drains would hang", budgets[0].Name, w.replicas)
			}
		}
	}
}

func blocksEviction(pdb *policyv1.PodDisruptionBudget, replicas int32) bool {
	if v := pdb.Spec.MaxUnavailable; v != nil {
		return (v.Type == intstr.Int && v.IntVal <= 0) || (v.Type == intstr.String && v.StrVal == "0%")
	}
	if v := pdb.Spec.MinAvailable; v != nil {
		return (v.Type == intstr.Int && v.IntVal >= replicas) || (v.Type == intstr.String && v.StrVal == "100%")
	}
	return false
}

func matches(selector *metav1.LabelSelector, podLabels map[string]string) bool {
	s, err := metav1.LabelSelectorAsSelector(selector)
	return err == nil && !s.Empty() && s.Matches(labels.Set(podLabels))
}
