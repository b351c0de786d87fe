package deploy

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's file these manifests use; the
// strict decode makes any other field an error.
type kustomization struct {
	metav1.TypeMeta `json:",inline"`
	Namespace       string   `json:"namespace"`
	Resources       []string `json:"resources"`
	Labels          []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
	} `json:"labels"`
}

// serviceMonitor is the prometheus-operator resource, reduced to the fields
// used here (strictly decoded, so a typo is an error).
type serviceMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Selector  metav1.LabelSelector `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path"`
			Interval string `json:"interval"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// manifests is every object of deploy/k8s, decoded strictly into its type.
type manifests struct {
	deployment  *appsv1.Deployment
	services    []*corev1.Service
	ingresses   []*networkingv1.Ingress
	netpols     []*networkingv1.NetworkPolicy
	configMaps  []*corev1.ConfigMap
	secrets     []*corev1.Secret
	monitors    []*serviceMonitor
	resources   []string
	kindsByFile map[string]string
}

func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	m := manifests{kindsByFile: map[string]string{}}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, doc := range bytes.Split(raw, []byte("\n---\n")) {
			var tm metav1.TypeMeta
			require.NoError(t, yaml.Unmarshal(doc, &tm), f)
			m.kindsByFile[filepath.Base(f)] = tm.Kind
			strict := func(into any) {
				require.NoError(t, yaml.UnmarshalStrict(doc, into), "%s: %s", f, tm.Kind)
			}
			switch tm.Kind {
			case "Kustomization":
				var k kustomization
				strict(&k)
				m.resources = k.Resources
			case "Deployment":
				require.Nil(t, m.deployment, "one Deployment")
				m.deployment = &appsv1.Deployment{}
				strict(m.deployment)
			case "Service":
				s := &corev1.Service{}
				strict(s)
				m.services = append(m.services, s)
			case "Ingress":
				i := &networkingv1.Ingress{}
				strict(i)
				m.ingresses = append(m.ingresses, i)
			case "NetworkPolicy":
				n := &networkingv1.NetworkPolicy{}
				strict(n)
				m.netpols = append(m.netpols, n)
			case "ConfigMap":
				c := &corev1.ConfigMap{}
				strict(c)
				m.configMaps = append(m.configMaps, c)
			case "Secret":
				s := &corev1.Secret{}
				strict(s)
				m.secrets = append(m.secrets, s)
			case "ServiceMonitor":
				s := &serviceMonitor{}
				strict(s)
				m.monitors = append(m.monitors, s)
			case "Namespace":
				strict(&corev1.Namespace{})
			case "ServiceAccount":
				strict(&corev1.ServiceAccount{})
			case "PersistentVolumeClaim":
				strict(&corev1.PersistentVolumeClaim{})
			default:
				t.Fatalf("%s: unexpected kind %q", f, tm.Kind)
			}
		}
	}
	require.NotNil(t, m.deployment)
	return m
}

func container(t *testing.T, d *appsv1.Deployment, name string) corev1.Container {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

// keySecret is the Secret that holds the SSH keys.
const keySecret = "breakglass-keys"

func TestKustomizationListsEveryManifestButTheSecret(t *testing.T) {
	m := load(t)
	for file, kind := range m.kindsByFile {
		switch {
		case kind == "Kustomization":
		case kind == "Secret":
			assert.NotContains(t, m.resources, file, "a key Secret must never be applied from git")
		default:
			assert.Contains(t, m.resources, file)
		}
	}
	for _, s := range m.secrets {
		for k, v := range s.StringData {
			assert.NotContains(t, v, "PRIVATE KEY-----", "secret template %s holds a real key", k)
		}
	}
}

func TestOnlyTheKeyholderMountsTheKeySecret(t *testing.T) {
	d := load(t).deployment
	spec := d.Spec.Template.Spec
	secretVolumes := map[string]bool{}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			secretVolumes[v.Name] = true
			assert.Equal(t, keySecret, v.Secret.SecretName)
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				assert.Nil(t, s.Secret, "no projected secrets")
			}
		}
	}
	require.NotEmpty(t, secretVolumes)

	for _, c := range append(spec.InitContainers, spec.Containers...) {
		var mounts []string
		for _, vm := range c.VolumeMounts {
			if secretVolumes[vm.Name] {
				mounts = append(mounts, vm.Name)
			}
		}
		fromSecret := false
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == keySecret {
				fromSecret = true
			}
		}
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil && e.SecretRef.Name == keySecret {
				fromSecret = true
			}
		}
		if c.Name == "keyholder" {
			assert.NotEmpty(t, mounts, "the keyholder mounts the keys")
			continue
		}
		assert.Empty(t, mounts, "%s must not mount the key Secret", c.Name)
		assert.False(t, fromSecret, "%s must not read env from the key Secret", c.Name)
	}
}

func TestBothContainersShareTheSocketDir(t *testing.T) {
	d := load(t).deployment
	var sockets corev1.Volume
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "sockets" {
			sockets = v
		}
	}
	require.NotNil(t, sockets.EmptyDir)
	assert.Equal(t, corev1.StorageMediumMemory, sockets.EmptyDir.Medium)
	for _, name := range []string{"web", "keyholder"} {
		c := container(t, d, name)
		idx := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "sockets" })
		require.GreaterOrEqual(t, idx, 0, name)
		assert.Equal(t, "/run/breakglass", c.VolumeMounts[idx].MountPath, name)
		assert.Contains(t, c.Env, corev1.EnvVar{Name: "BREAKGLASS_SOCKET_DIR", Value: "/run/breakglass"}, name)
	}
}

func TestPodIsLockedDown(t *testing.T) {
	d := load(t).deployment
	assert.Equal(t, int32(1), *d.Spec.Replicas)
	assert.Equal(t, appsv1.RecreateDeploymentStrategyType, d.Spec.Strategy.Type)
	spec := d.Spec.Template.Spec
	require.NotNil(t, spec.AutomountServiceAccountToken)
	assert.False(t, *spec.AutomountServiceAccountToken)
	require.NotNil(t, spec.SecurityContext)
	require.NotNil(t, spec.SecurityContext.RunAsNonRoot)
	assert.True(t, *spec.SecurityContext.RunAsNonRoot)
	assert.False(t, spec.HostNetwork || spec.HostPID || spec.HostIPC)

	require.Len(t, spec.Containers, 2)
	for _, c := range spec.Containers {
		t.Run(c.Name, func(t *testing.T) {
			sc := c.SecurityContext
			require.NotNil(t, sc)
			require.NotNil(t, sc.RunAsNonRoot)
			assert.True(t, *sc.RunAsNonRoot)
			require.NotNil(t, sc.RunAsUser)
			assert.NotZero(t, *sc.RunAsUser)
			require.NotNil(t, sc.ReadOnlyRootFilesystem)
			assert.True(t, *sc.ReadOnlyRootFilesystem)
			require.NotNil(t, sc.AllowPrivilegeEscalation)
			assert.False(t, *sc.AllowPrivilegeEscalation)
			assert.Nil(t, sc.Privileged)
			require.NotNil(t, sc.Capabilities)
			assert.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)
			assert.Empty(t, sc.Capabilities.Add)
			require.NotNil(t, sc.SeccompProfile)
			assert.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, sc.SeccompProfile.Type)
			if c.Name == "keyholder" {
				assert.Empty(t, c.Ports, "the keyholder has no TCP listener")
			}
		})
	}
	// Both groups must match so the 0660 sockets are shared.
	web, kh := container(t, d, "web"), container(t, d, "keyholder")
	assert.Equal(t, *web.SecurityContext.RunAsGroup, *kh.SecurityContext.RunAsGroup)
	assert.NotEqual(t, *web.SecurityContext.RunAsUser, *kh.SecurityContext.RunAsUser)
}

func TestProbes(t *testing.T) {
	web := container(t, load(t).deployment, "web")
	require.NotNil(t, web.LivenessProbe)
	require.NotNil(t, web.LivenessProbe.HTTPGet)
	assert.Equal(t, "/healthz", web.LivenessProbe.HTTPGet.Path)
	require.NotNil(t, web.ReadinessProbe)
	require.NotNil(t, web.ReadinessProbe.HTTPGet)
	assert.Equal(t, "/readyz", web.ReadinessProbe.HTTPGet.Path)
}

func TestMetricsNeverBehindTheIngress(t *testing.T) {
	m := load(t)
	require.NotEmpty(t, m.ingresses)
	metricsPorts := map[string]bool{"metrics": true, "9090": true}
	for _, s := range m.services {
		for _, p := range s.Spec.Ports {
			if p.Name == "metrics" || p.TargetPort.String() == "metrics" {
				metricsPorts[p.Name] = true
				metricsPorts[p.TargetPort.String()] = true
				metricsPorts[itoa(p.Port)] = true
			}
		}
	}
	for _, ing := range m.ingresses {
		var backends []networkingv1.IngressBackend
		if ing.Spec.DefaultBackend != nil {
			backends = append(backends, *ing.Spec.DefaultBackend)
		}
		for _, r := range ing.Spec.Rules {
			require.NotNil(t, r.HTTP)
			for _, p := range r.HTTP.Paths {
				backends = append(backends, p.Backend)
			}
		}
		for _, b := range backends {
			require.NotNil(t, b.Service)
			assert.False(t, metricsPorts[b.Service.Port.Name], "ingress %s routes to the metrics port", ing.Name)
			assert.False(t, metricsPorts[itoa(b.Service.Port.Number)], "ingress %s routes to the metrics port", ing.Name)
		}
	}
	require.Len(t, m.monitors, 1)
	assert.Equal(t, "metrics", m.monitors[0].Spec.Endpoints[0].Port)
}

func TestNetworkPolicyAllowsOnlyWhatIsNeeded(t *testing.T) {
	m := load(t)
	require.Len(t, m.netpols, 1)
	np := m.netpols[0]
	assert.ElementsMatch(t, []networkingv1.PolicyType{"Ingress", "Egress"}, np.Spec.PolicyTypes)
	var ingressPorts []string
	for _, r := range np.Spec.Ingress {
		require.NotEmpty(t, r.From, "every ingress rule names its peers")
		for _, p := range r.Ports {
			ingressPorts = append(ingressPorts, p.Port.String())
		}
	}
	assert.ElementsMatch(t, []string{"8080", "9090"}, ingressPorts)
	var egressPorts []string
	for _, r := range np.Spec.Egress {
		require.NotEmpty(t, r.To, "every egress rule names its peers")
		for _, p := range r.Ports {
			egressPorts = append(egressPorts, p.Port.String())
		}
	}
	assert.ElementsMatch(t, []string{"22", "443", "53", "53"}, egressPorts)
}

// itoa formats a port number; 0 (unset) formats as "".
func itoa(n int32) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(int(n))
}

// TestOnlyTheKeyholderMountsTheOperators: the operators file (which passkeys
// may act) reaches the keyholder alone; the web, where the agent runs, never
// mounts it. The keyholder requires presence, with the Ingress host as RP
// ID and its https URL as the one origin, and enrollment closed.
func TestOnlyTheKeyholderMountsTheOperators(t *testing.T) {
	m := load(t)
	assert.Contains(t, m.resources, "operators.yaml")
	spec := m.deployment.Spec.Template.Spec
	var vol string
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == "breakglass-operators" {
			vol = v.Name
		}
	}
	require.NotEmpty(t, vol, "a volume from the operators ConfigMap")
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		mounted := false
		for _, vm := range c.VolumeMounts {
			if vm.Name == vol {
				mounted = true
				assert.True(t, vm.ReadOnly, "%s mounts the operators read-only", c.Name)
			}
		}
		for _, e := range c.EnvFrom {
			assert.False(t, e.ConfigMapRef != nil && e.ConfigMapRef.Name == "breakglass-operators", "%s reads env from the operators", c.Name)
		}
		if c.Name == "keyholder" {
			assert.True(t, mounted, "the keyholder mounts the operators")
			continue
		}
		assert.False(t, mounted, "%s must not mount the operators", c.Name)
	}

	env := map[string]string{}
	for _, e := range container(t, m.deployment, "keyholder").Env {
		env[e.Name] = e.Value
	}
	require.NotEmpty(t, m.ingresses)
	host := m.ingresses[0].Spec.Rules[0].Host
	assert.Equal(t, "required", env["BREAKGLASS_PRESENCE"])
	assert.Equal(t, "closed", env["BREAKGLASS_ENROLL"])
	assert.Equal(t, host, env["BREAKGLASS_RP_ID"], "the RP ID is the site's host name")
	assert.Equal(t, "https://"+host, env["BREAKGLASS_ORIGINS"])
	assert.Equal(t, "/etc/breakglass/operators", env["BREAKGLASS_OPERATORS_FILE"])
	for _, e := range container(t, m.deployment, "web").Env {
		assert.NotEqual(t, "BREAKGLASS_PRESENCE", e.Name, "presence is the keyholder's to decide")
	}
}
