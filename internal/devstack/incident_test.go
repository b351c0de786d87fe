package devstack

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/testing/pvesim"
)

func TestApplyIncident(t *testing.T) {
	for _, tc := range []struct {
		incident string
		check    func(t *testing.T, vm *pvesim.VM)
	}{
		{"", func(t *testing.T, vm *pvesim.VM) { assert.True(t, vm.SSHUp()) }},
		{"sshd-down", func(t *testing.T, vm *pvesim.VM) {
			assert.False(t, vm.SSHUp())
			assert.Equal(t, pvesim.Running, vm.State(), "the guest lives")
		}},
		{"panic", func(t *testing.T, vm *pvesim.VM) { assert.Contains(t, vm.Screen(), "Kernel panic") }},
		{"stopped", func(t *testing.T, vm *pvesim.VM) { assert.Equal(t, pvesim.Stopped, vm.State()) }},
		{"locked", func(t *testing.T, vm *pvesim.VM) { assert.True(t, vm.SSHUp()) }},
		{"agent-dead", func(t *testing.T, vm *pvesim.VM) { assert.True(t, vm.SSHUp()) }},
	} {
		t.Run("incident-"+tc.incident, func(t *testing.T) {
			vm := pvesim.NewVM(102)
			require.NoError(t, applyIncident(vm, tc.incident))
			tc.check(t, vm)
		})
	}
	err := applyIncident(pvesim.NewVM(102), "meteor")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "sshd-down, panic, agent-dead, locked, stopped")
}
