package usage

import "time"

// Totals are accrued amounts in the record's exact units; Report turns
// them into hours.
type Totals struct {
	InstanceMS int64 // instance time observed running
	CoreMS     int64 // the same, times the instance's cores
	SilentMS   int64 // instance time while its node was silent (not in InstanceMS or CoreMS)
	AddressMS  int64 // address time held
	ImageKiBS  int64 // image storage, KiB-seconds
}

func (t *Totals) add(o Totals) {
	t.InstanceMS += o.InstanceMS
	t.CoreMS += o.CoreMS
	t.SilentMS += o.SilentMS
	t.AddressMS += o.AddressMS
	t.ImageKiBS += o.ImageKiBS
}

// amount is what the span [a, b) of an opened resource adds.
func amount(open *Event, a, b int64, silent bool) Totals {
	ms := b - a
	switch open.Kind {
	case KindInstance:
		if silent {
			return Totals{SilentMS: ms}
		}
		return Totals{InstanceMS: ms, CoreMS: open.Cores * ms}
	case KindAddress:
		return Totals{AddressMS: ms}
	case KindImage:
		kib := (open.Bytes + 1023) / 1024
		return Totals{ImageKiBS: kib * ms / 1000}
	}
	return Totals{}
}

// span is a time range [from, to) in Unix milliseconds.
type span struct{ from, to int64 }

// accrual walks a stream of events, resource by resource in time order,
// and emits each span a resource was in use within the window
// [from, to). Instance spans are cut where their node was silent (downs)
// and those parts emitted as silent.
type accrual struct {
	from, to int64
	downs    map[string][]span // node -> silent spans, in time order
	emit     func(open *Event, a, b int64, silent bool)
	cur      *Event // the open event of the resource being read, if open
	last     *Event // the resource's latest event
	// lastOf, when set, is told each resource's latest event when the
	// walk leaves it (Rollup's checkpoints).
	lastOf func(e *Event)
}

func (w *accrual) add(e Event) {
	if w.last != nil && (w.last.Kind != e.Kind || w.last.Resource != e.Resource) {
		w.leave()
	}
	at := e.At.UnixMilli()
	if w.cur != nil {
		w.close(at)
	}
	w.cur = nil
	ev := e
	if opens(e.Kind, e.State) {
		w.cur = &ev
	}
	w.last = &ev
}

// finish closes the last resource's span at the window's end.
func (w *accrual) finish() {
	if w.last != nil {
		w.leave()
	}
}

func (w *accrual) leave() {
	if w.cur != nil {
		w.close(w.to)
	}
	if w.lastOf != nil {
		w.lastOf(w.last)
	}
	w.cur, w.last = nil, nil
}

func (w *accrual) close(at int64) {
	a, b := max(w.cur.At.UnixMilli(), w.from), min(at, w.to)
	if b < a {
		return
	}
	// An empty span (opened at the window's very end) is still emitted:
	// its group shows in the report, with nothing accrued yet.
	if w.cur.Kind != KindInstance {
		w.emit(w.cur, a, b, false)
		return
	}
	for _, d := range w.downs[w.cur.Node] {
		if d.to <= a || d.from >= b {
			continue
		}
		if d.from > a {
			w.emit(w.cur, a, d.from, false)
		}
		end := min(b, d.to)
		w.emit(w.cur, max(a, d.from), end, true)
		a = end
		if a >= b {
			return
		}
	}
	w.emit(w.cur, a, b, false)
}

// silences reads node events into each node's silent spans within the
// window.
func silences(nodeEvents []Event, from, to int64) map[string][]span {
	downs := map[string][]span{}
	w := &accrual{from: from, to: to, emit: func(open *Event, a, b int64, _ bool) {
		downs[open.Resource] = append(downs[open.Resource], span{a, b})
	}}
	for _, e := range nodeEvents {
		w.add(e)
	}
	w.finish()
	return downs
}

// hourMS is an hour in milliseconds: buckets start at whole UTC hours.
const hourMS = int64(time.Hour / time.Millisecond)

func floorHour(ms int64) int64 { return ms - ((ms%hourMS)+hourMS)%hourMS }
