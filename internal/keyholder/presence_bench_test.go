package keyholder_test

import (
	"context"
	"testing"
	"time"

	"breakglass/internal/ipc"
)

// BenchmarkPresenceRoundTrip times a mutating verb (reset, on the simulated
// Proxmox host) through keyholder.sock with presence required against the
// same verb on a keyholder with presence off, alternating the two. With
// presence the time is the challenge request plus the verb request, which
// verifies the assertion; the authenticator's own signing (the phone's
// work, and the operator's tap) is left out. It reports both medians and
// what presence adds (target: under 5 ms).
func BenchmarkPresenceRoundTrip(b *testing.B) {
	on, alice, _ := newPresenceEnv(b)
	off := newSimEnv(b, options{})
	ctx := context.Background()
	var with, without []time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := off.client.Run(ctx, "reset", "bench"); err != nil {
			b.Fatalf("reset without presence: %v", err)
		}
		without = append(without, time.Since(start))

		start = time.Now()
		ch, err := on.client.Challenge(ctx, ipc.ChallengeRequest{Verb: "reset", Actor: "bench"})
		if err != nil {
			b.Fatalf("challenge: %v", err)
		}
		asked := time.Since(start)
		p := alice.Get(ch)
		start = time.Now()
		res, err := on.client.RunRequest(ctx, "reset", ipc.RunRequest{Actor: "bench", Presence: &p})
		if err != nil || res.Operator != "alice" {
			b.Fatalf("reset with presence: %v %+v", err, res)
		}
		with = append(with, asked+time.Since(start))
	}
	b.StopTimer()
	mw, mo := median(with), median(without)
	b.ReportMetric(ms(mw), "with_presence_median_ms")
	b.ReportMetric(ms(mo), "without_presence_median_ms")
	b.ReportMetric(ms(mw-mo), "added_median_ms")
}
