package cuda

import "github.com/vserve/vserve/runtime/kernel"

// EventTimer is kernel.EventTimer, restated here for the package docs; the
// runner uses it through the kernel package. It is an optional capability of a kernel.Backend whose ops run
// asynchronously: device-side timestamps placed in the stream of work.
//
// Mark enqueues a timestamp after everything submitted so far and returns
// a handle; Elapsed waits until the later mark has been reached and
// returns the device time between two marks; ReleaseMarks recycles
// handles. The runner finds it by type assertion on the method set (the
// handles are plain ints, so no import of this package is needed):
//
//	m0, _ := t.Mark()          // before the forward pass
//	... forward ...
//	m1, _ := t.Mark()          // between forward and sampling
//	... sample ...
//	m2, _ := t.Mark()
//	fwd, _ := t.Elapsed(m0, m1)
//	smp, _ := t.Elapsed(m1, m2)
//	t.ReleaseMarks(m0, m1, m2)
type EventTimer = kernel.EventTimer
