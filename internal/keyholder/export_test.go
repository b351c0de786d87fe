package keyholder

import "time"

// SetAnswerTimeout shortens the answer timeout for tests.
func SetAnswerTimeout(k *Keyholder, d time.Duration) { k.answerTimeout = d }
