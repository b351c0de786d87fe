package deploy

import (
	"fmt"
	"io/fs"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// The names the checks read: the web's identity header and its settings,
// and the ingress-nginx annotations that make a route overwrite the header
// from a forward-auth answer (docs/deploy.md).
const (
	identityHeader     = "X-Authentik-Username"
	trustedProxiesEnv  = "BREAKGLASS_TRUSTED_PROXIES"
	metricsListenEnv   = "BREAKGLASS_METRICS_LISTEN"
	defaultMetricsPort = 9090
	webContainer       = "web"
	nginxAnnotation    = "nginx.ingress.kubernetes.io/"
	annAuthURL         = nginxAnnotation + "auth-url"
	annAuthSignin      = nginxAnnotation + "auth-signin"
	annAuthRespHeaders = nginxAnnotation + "auth-response-headers"
	// authentikComponent and its placeholder range (docs/deploy.md).
	authentikComponent = "authentik"
	trustedPlaceholder = "REPLACE-WITH-THE-INGRESS-CONTROLLER-PODS-CIDR"
	// renderRoot is where memFS puts deploy/ in memory.
	renderRoot = "/deploy"
)

// routingKinds are the objects besides Ingress that can route traffic to a
// Service; this test cannot tell whether they overwrite the identity header,
// so a render that trusts it refuses them.
var routingKinds = []string{"HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "IngressRoute", "VirtualService", "Gateway"}

// rendered is one kustomize build, decoded strictly into the API types the
// checks read; other kinds are kept by kind only.
type rendered struct {
	name        string
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	ingresses   []*networkingv1.Ingress
	configMaps  []*corev1.ConfigMap
	kinds       []string
}

// memFS copies deploy/k8s and deploy/testdata into an in-memory filesystem
// under renderRoot, where the tests add kustomizations of their own.
func memFS(t *testing.T) filesys.FileSystem {
	t.Helper()
	fsys := filesys.MakeFsInMemory()
	for _, dir := range []string{"k8s", "testdata"} {
		require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			raw, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return fsys.WriteFile(path.Join(renderRoot, filepath.ToSlash(p)), raw)
		}))
	}
	return fsys
}

// render builds the kustomization in dir (under renderRoot) with kustomize's
// own library, as `kubectl apply -k` would.
func render(t *testing.T, fsys filesys.FileSystem, name, dir string) rendered {
	t.Helper()
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, path.Join(renderRoot, dir))
	require.NoError(t, err, "kustomize build %s", dir)
	out := rendered{name: name}
	for _, r := range m.Resources() {
		raw, err := r.AsYAML()
		require.NoError(t, err)
		kind := r.GetKind()
		out.kinds = append(out.kinds, kind)
		strict := func(into any) {
			require.NoError(t, yaml.UnmarshalStrict(raw, into), "%s: %s %s", name, kind, r.GetName())
		}
		switch kind {
		case "Deployment":
			d := &appsv1.Deployment{}
			strict(d)
			out.deployments = append(out.deployments, d)
		case "Service":
			s := &corev1.Service{}
			strict(s)
			out.services = append(out.services, s)
		case "Ingress":
			i := &networkingv1.Ingress{}
			strict(i)
			out.ingresses = append(out.ingresses, i)
		case "ConfigMap":
			c := &corev1.ConfigMap{}
			strict(c)
			out.configMaps = append(out.configMaps, c)
		}
	}
	return out
}

// overlay writes a kustomization over the base with the given components
// (paths under deploy/k8s/components) and returns its directory.
func overlay(t *testing.T, fsys filesys.FileSystem, name string, components ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../k8s\n")
	if len(components) > 0 {
		b.WriteString("components:\n")
		for _, c := range components {
			fmt.Fprintf(&b, "  - ../../k8s/components/%s\n", c)
		}
	}
	dir := path.Join("rendered", name)
	require.NoError(t, fsys.WriteFile(path.Join(renderRoot, dir, "kustomization.yaml"), []byte(b.String())))
	return dir
}

// builds is every shipped way to deploy: the base, the base with each
// component, with all of them, and every overlay under deploy/k8s/overlays.
func builds(t *testing.T) []rendered {
	t.Helper()
	fsys := memFS(t)
	out := []rendered{render(t, fsys, "base", "k8s")}
	comps, err := os.ReadDir("k8s/components")
	require.NoError(t, err)
	var all []string
	for _, c := range comps {
		if !c.IsDir() {
			continue
		}
		all = append(all, c.Name())
		out = append(out, render(t, fsys, "component "+c.Name(), overlay(t, fsys, c.Name(), c.Name())))
	}
	require.NotEmpty(t, all)
	out = append(out, render(t, fsys, "all components", overlay(t, fsys, "all", all...)))
	overlays, err := os.ReadDir("k8s/overlays")
	if !os.IsNotExist(err) {
		require.NoError(t, err)
	}
	for _, o := range overlays {
		if o.IsDir() {
			out = append(out, render(t, fsys, "overlay "+o.Name(), path.Join("k8s/overlays", o.Name())))
		}
	}
	return out
}

// webPod is the Deployment whose pods run the web, and its container.
func (r rendered) webPod() (*appsv1.Deployment, *corev1.Container, error) {
	for _, d := range r.deployments {
		for i := range d.Spec.Template.Spec.Containers {
			if c := &d.Spec.Template.Spec.Containers[i]; c.Name == webContainer {
				return d, c, nil
			}
		}
	}
	return nil, nil, fmt.Errorf("%s: no Deployment with a %q container", r.name, webContainer)
}

// trustedProxies is the web's BREAKGLASS_TRUSTED_PROXIES as rendered; known
// is false when the value comes from somewhere this test cannot read (a
// Secret, a field), which counts as trusted.
func (r rendered) trustedProxies(d *appsv1.Deployment, c *corev1.Container) (value string, known bool) {
	value, known = "", true
	fromConfigMap := func(name, key string) (string, bool) {
		for _, cm := range r.configMaps {
			if cm.Name == name && cm.Namespace == d.Namespace {
				v, ok := cm.Data[key]
				return v, ok
			}
		}
		return "", false
	}
	// envFrom first, then env, as the kubelet does.
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			if v, ok := fromConfigMap(ef.ConfigMapRef.Name, strings.TrimPrefix(trustedProxiesEnv, ef.Prefix)); ok && strings.HasPrefix(trustedProxiesEnv, ef.Prefix) {
				value, known = v, true
			}
		default:
			return "", false
		}
	}
	for _, e := range c.Env {
		if e.Name != trustedProxiesEnv {
			continue
		}
		switch {
		case e.ValueFrom == nil:
			value, known = e.Value, true
		case e.ValueFrom.ConfigMapKeyRef != nil:
			value, known = fromConfigMap(e.ValueFrom.ConfigMapKeyRef.Name, e.ValueFrom.ConfigMapKeyRef.Key)
		default:
			value, known = "", false
		}
	}
	return value, known
}

// trustsHeader reports whether the web believes the identity header from
// some peer in this render.
func (r rendered) trustsHeader() (bool, error) {
	d, c, err := r.webPod()
	if err != nil {
		return false, err
	}
	v, known := r.trustedProxies(d, c)
	return !known || strings.TrimSpace(v) != "", nil
}

// selects reports whether the Service s sends traffic to d's pods.
func selects(s *corev1.Service, d *appsv1.Deployment) bool {
	if s.Namespace != d.Namespace || len(s.Spec.Selector) == 0 {
		return false
	}
	for k, v := range s.Spec.Selector {
		if d.Spec.Template.Labels[k] != v {
			return false
		}
	}
	return true
}

// containerPort resolves a Service's targetPort to the web container's port.
func containerPort(c *corev1.Container, target intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, p := range c.Ports {
		if (target.Type == intstr.String && p.Name == target.StrVal) || (target.Type == intstr.Int && p.ContainerPort == target.IntVal) {
			return p, true
		}
	}
	if target.Type == intstr.Int {
		return corev1.ContainerPort{ContainerPort: target.IntVal}, true
	}
	return corev1.ContainerPort{}, false
}

// metricsPort is the port of the web's metrics listener in this render.
func metricsPort(c *corev1.Container) int32 {
	for _, e := range c.Env {
		if e.Name == metricsListenEnv {
			_, p, ok := strings.Cut(e.Value, ":")
			if n, err := strconv.Atoi(p); ok && err == nil {
				return int32(n)
			}
		}
	}
	return defaultMetricsPort
}

// route is one Ingress backend that reaches the web.
type route struct {
	ingress *networkingv1.Ingress
	where   string
	port    corev1.ContainerPort
}

// webRoutes lists every Ingress backend whose Service selects the web's pods,
// with the container port it lands on; an unresolvable backend port on a
// Service of the web is an error.
func (r rendered) webRoutes() ([]route, []error) {
	d, c, err := r.webPod()
	if err != nil {
		return nil, []error{err}
	}
	var out []route
	var errs []error
	for _, ing := range r.ingresses {
		type backend struct {
			where string
			b     networkingv1.IngressBackend
		}
		var backends []backend
		if ing.Spec.DefaultBackend != nil {
			backends = append(backends, backend{"default backend", *ing.Spec.DefaultBackend})
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				backends = append(backends, backend{fmt.Sprintf("host %q path %q", rule.Host, p.Path), p.Backend})
			}
		}
		for _, b := range backends {
			if b.b.Service == nil {
				errs = append(errs, fmt.Errorf("%s: Ingress %s %s: a backend that is not a Service", r.name, ing.Name, b.where))
				continue
			}
			for _, s := range r.services {
				if s.Name != b.b.Service.Name || s.Namespace != ing.Namespace || !selects(s, d) {
					continue
				}
				idx := slices.IndexFunc(s.Spec.Ports, func(p corev1.ServicePort) bool {
					return (b.b.Service.Port.Name != "" && p.Name == b.b.Service.Port.Name) || (b.b.Service.Port.Number != 0 && p.Port == b.b.Service.Port.Number)
				})
				if idx < 0 {
					errs = append(errs, fmt.Errorf("%s: Ingress %s %s: no such port on Service %s", r.name, ing.Name, b.where, s.Name))
					continue
				}
				target := s.Spec.Ports[idx].TargetPort
				if target.Type == intstr.Int && target.IntVal == 0 {
					target = intstr.FromInt32(s.Spec.Ports[idx].Port)
				}
				cp, ok := containerPort(c, target)
				if !ok {
					errs = append(errs, fmt.Errorf("%s: Ingress %s %s: Service %s's target port %s is not a port of the web", r.name, ing.Name, b.where, s.Name, target.String()))
					continue
				}
				out = append(out, route{ingress: ing, where: b.where, port: cp})
			}
		}
	}
	return out, errs
}

// overwritesIdentity reports why ing does not set the identity header from a
// forward-auth answer on every request, or nil when it does: ingress-nginx
// asks auth-url and sets each header of auth-response-headers from the answer
// (proxy_set_header, replacing a client's copy).
func overwritesIdentity(ing *networkingv1.Ingress) error {
	a := ing.Annotations
	u, err := url.Parse(a[annAuthURL])
	if a[annAuthURL] == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("no forward auth: %s is %q", annAuthURL, a[annAuthURL])
	}
	if !slices.ContainsFunc(strings.Split(a[annAuthRespHeaders], ","), func(h string) bool {
		return strings.EqualFold(strings.TrimSpace(h), identityHeader)
	}) {
		return fmt.Errorf("%s %q does not set %s from the forward-auth answer", annAuthRespHeaders, a[annAuthRespHeaders], identityHeader)
	}
	// A snippet could set the header again from the client's copy.
	for k, v := range a {
		if strings.HasPrefix(k, nginxAnnotation) && strings.HasSuffix(k, "-snippet") && strings.Contains(strings.ToLower(v), strings.ToLower(identityHeader)) {
			return fmt.Errorf("%s touches %s", k, identityHeader)
		}
	}
	return nil
}

// edgeViolations is every way this render lets a request reach the web in a
// way the edge's promises forbid: the identity header trusted while some
// route to the web does not overwrite it from a forward-auth answer (or
// while anything this test cannot read routes to it), the web exposed
// outside the cluster other than through an Ingress, or the metrics port
// routed.
func (r rendered) edgeViolations() []error {
	var errs []error
	d, c, err := r.webPod()
	if err != nil {
		return []error{err}
	}
	trusted, err := r.trustsHeader()
	if err != nil {
		return []error{err}
	}
	routes, rerrs := r.webRoutes()
	errs = append(errs, rerrs...)
	metrics := metricsPort(c)
	for _, rt := range routes {
		if rt.port.Name == "metrics" || rt.port.ContainerPort == metrics {
			errs = append(errs, fmt.Errorf("%s: Ingress %s %s routes to the metrics port", r.name, rt.ingress.Name, rt.where))
		}
		if trusted {
			if err := overwritesIdentity(rt.ingress); err != nil {
				errs = append(errs, fmt.Errorf("%s: the web trusts %s (%s) but Ingress %s %s: %w", r.name, identityHeader, trustedProxiesEnv, rt.ingress.Name, rt.where, err))
			}
		}
	}
	if trusted {
		for _, k := range r.kinds {
			if slices.Contains(routingKinds, k) {
				errs = append(errs, fmt.Errorf("%s: the web trusts %s but a %s may route to it without overwriting the header", r.name, identityHeader, k))
			}
		}
	}
	for _, s := range r.services {
		if selects(s, d) && s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
			errs = append(errs, fmt.Errorf("%s: Service %s is %s: the web is reached only through the Ingress", r.name, s.Name, s.Spec.Type))
		}
	}
	return errs
}

// TestRenderedEdgeInvariants renders every shipped way to deploy with
// kustomize's own library and checks, on the rendered objects: wherever the
// web trusts the identity header, every Ingress route to it overwrites that
// header from a forward-auth answer; the web is never exposed but through an
// Ingress; the metrics port is never routed.
func TestRenderedEdgeInvariants(t *testing.T) {
	for _, r := range builds(t) {
		t.Run(r.name, func(t *testing.T) {
			routes, errs := r.webRoutes()
			require.Empty(t, errs)
			require.NotEmpty(t, routes, "the UI and API are routed")
			for _, err := range r.edgeViolations() {
				t.Error(err)
			}
		})
	}
}

// TestBaseTrustsNoIdentityHeader: the base deploys with the identity header
// off, so a client's own x-authentik-username through the Ingress gets 401.
func TestBaseTrustsNoIdentityHeader(t *testing.T) {
	r := render(t, memFS(t), "base", "k8s")
	d, c, err := r.webPod()
	require.NoError(t, err)
	v, known := r.trustedProxies(d, c)
	assert.True(t, known)
	assert.Empty(t, strings.TrimSpace(v), "the base trusts no proxy")
	trusted, err := r.trustsHeader()
	require.NoError(t, err)
	assert.False(t, trusted)
	for _, ing := range r.ingresses {
		assert.NotContains(t, ing.Annotations, annAuthURL, "the base needs no SSO")
	}
}

// TestAuthentikComponentRendersForwardAuth: with components/authentik, the
// rendered Ingress asks the outpost, sends a browser to sign in, and sets
// X-authentik-username from the answer; auth-snippet is not relied on; the
// trusted range is a placeholder the web refuses until an overlay sets it.
func TestAuthentikComponentRendersForwardAuth(t *testing.T) {
	fsys := memFS(t)
	r := render(t, fsys, "authentik", overlay(t, fsys, "authentik", authentikComponent))
	require.Len(t, r.ingresses, 1)
	ing := r.ingresses[0]
	require.NoError(t, overwritesIdentity(ing))
	assert.Contains(t, ing.Annotations[annAuthURL], "/outpost.goauthentik.io/auth/nginx")
	assert.Contains(t, ing.Annotations[annAuthSignin], "/outpost.goauthentik.io/start")
	assert.Equal(t, "X-authentik-username", ing.Annotations[annAuthRespHeaders])
	assert.NotContains(t, ing.Annotations, nginxAnnotation+"auth-snippet", "off by default in ingress-nginx")
	assert.Equal(t, "off", ing.Annotations[nginxAnnotation+"proxy-buffering"], "the base's annotations are kept")

	d, c, err := r.webPod()
	require.NoError(t, err)
	v, known := r.trustedProxies(d, c)
	require.True(t, known)
	assert.Equal(t, trustedPlaceholder, v)
	assert.Error(t, parseTrustedProxies(v), "the placeholder must keep the web from starting")
}

// TestEdgeCheckBites renders overlays in testdata that break the edge in one
// way each, and the example overlay that does it right: the check must find
// each break, and nothing in the example.
func TestEdgeCheckBites(t *testing.T) {
	fsys := memFS(t)
	const edgeRange = "10.42.7.0/24"
	tests := []struct {
		dir string
		// trusted is the web's BREAKGLASS_TRUSTED_PROXIES as the check
		// must read it from the render.
		trusted string
		want    string
	}{
		{dir: "trusted-without-forward-auth", trusted: edgeRange, want: "no forward auth"},
		{dir: "forward-auth-without-identity-header", trusted: edgeRange, want: "does not set X-Authentik-Username"},
		{dir: "snippet-restores-client-header", trusted: edgeRange, want: "configuration-snippet touches"},
		{dir: "second-ingress-without-forward-auth", trusted: edgeRange, want: "Ingress breakglass-direct"},
		{dir: "trusted-from-configmap", trusted: edgeRange, want: "no forward auth"},
		{dir: "metrics-routed", want: "routes to the metrics port"},
		{dir: "httproute-while-trusted", trusted: edgeRange, want: "HTTPRoute"},
		{dir: "nodeport", want: "is NodePort"},
		{dir: "authentik-example", trusted: edgeRange},
	}
	for _, tt := range tests {
		t.Run(tt.dir, func(t *testing.T) {
			r := render(t, fsys, tt.dir, path.Join("testdata/overlays", tt.dir))
			d, c, err := r.webPod()
			require.NoError(t, err)
			v, known := r.trustedProxies(d, c)
			assert.True(t, known)
			assert.Equal(t, tt.trusted, v)
			errs := r.edgeViolations()
			if tt.want == "" {
				assert.Empty(t, errs)
				assert.NoError(t, parseTrustedProxies(v), "the example's range is one the web accepts")
				return
			}
			require.NotEmpty(t, errs, "the check must refuse %s", tt.dir)
			t.Log(errs)
			assert.Contains(t, fmt.Sprint(errs), tt.want)
		})
	}
}

// parseTrustedProxies accepts what the web accepts for
// BREAKGLASS_TRUSTED_PROXIES: a comma list of CIDRs or addresses.
func parseTrustedProxies(v string) error {
	n := 0
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if _, err := netip.ParsePrefix(s); err != nil {
			if _, err := netip.ParseAddr(s); err != nil {
				return fmt.Errorf("%q is not a CIDR or an IP address", s)
			}
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no CIDR in %q", v)
	}
	return nil
}

// TestBearerTokenOnlyFromAFileInTheWeb: no render sets API_BEARER_TOKEN in
// a manifest (a token in git, or in an environment the agent's tools might
// see); with components/api-token the web reads it from a read-only Secret
// file that no other container mounts.
func TestBearerTokenOnlyFromAFileInTheWeb(t *testing.T) {
	const tokenSecret = "breakglass-api-token"
	sawFile := false
	for _, r := range builds(t) {
		t.Run(r.name, func(t *testing.T) {
			for _, d := range r.deployments {
				spec := d.Spec.Template.Spec
				tokenVolumes := map[string]bool{}
				for _, v := range spec.Volumes {
					if v.Secret != nil && v.Secret.SecretName == tokenSecret {
						tokenVolumes[v.Name] = true
					}
				}
				for _, c := range append(spec.InitContainers, spec.Containers...) {
					file := ""
					for _, e := range c.Env {
						assert.NotEqual(t, "API_BEARER_TOKEN", e.Name, "%s: the token comes from a file (API_BEARER_TOKEN_FILE)", c.Name)
						if e.Name == "API_BEARER_TOKEN_FILE" {
							file = e.Value
						}
					}
					for _, m := range c.VolumeMounts {
						if !tokenVolumes[m.Name] {
							continue
						}
						assert.Equal(t, webContainer, c.Name, "only the web mounts the token Secret")
						assert.True(t, m.ReadOnly, "the token Secret is mounted read-only")
						if file != "" && strings.HasPrefix(file, m.MountPath+"/") {
							sawFile = true
						}
					}
					if file != "" {
						assert.Equal(t, webContainer, c.Name)
						assert.NotEmpty(t, tokenVolumes, "API_BEARER_TOKEN_FILE points into the token Secret")
					}
				}
			}
		})
	}
	assert.True(t, sawFile, "components/api-token sets API_BEARER_TOKEN_FILE to a file of the mounted Secret")
}
