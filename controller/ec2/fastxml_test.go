package ec2

import (
	"bytes"
	"encoding/xml"
	"reflect"
	"testing"
	"time"
)

type fxInner struct {
	A string  `xml:"a"`
	N *int    `xml:"n,omitempty"`
	F float64 `xml:"f"`
}

type FxEmbedded struct {
	Owner string `xml:"ownerId"`
	Extra string `xml:",omitempty"`
}

type fxAll struct {
	XMLName xml.Name `xml:"whatever"`
	ResponseMeta
	fxHidden string
	Skip     string          `xml:"-"`
	S        string          `xml:"s"`
	Untagged string          //nolint: default name
	I        int64           `xml:"i,omitempty"`
	U        uint16          `xml:"u"`
	B        bool            `xml:"b,omitempty"`
	F32      float32         `xml:"f32"`
	T        Time            `xml:"t"`
	TP       *Time           `xml:"tp"`
	In       fxInner         `xml:"inner"`
	InP      *fxInner        `xml:"innerP,omitempty"`
	Strs     []string        `xml:"strSet>item"`
	Ptrs     []*fxInner      `xml:"ptrSet>item,omitempty"`
	Mid      string          `xml:"x>y>z"`
	Mid2     string          `xml:"x>y>w,omitempty"`
	Mid3     int             `xml:"x>v"`
	After    string          `xml:"after"`
	L        List[fxInner]   `xml:"listSet"`
	LE       List[string]    `xml:"emptySet,omitempty"`
	LP       List[*fxInner]  `xml:"wrap>ptrList"`
	LT       List[Time]      `xml:"times"`
	Nested   List[List[int]] `xml:"nested"`
	Tags     []tag           `xml:"tagSet>item"`
	Rs       []goldenGroup   `xml:"rs"`
	PS       *string         `xml:"ps"`
	FxEmbedded
}

func fxSample(s string, n int, b bool) *fxAll {
	t := TimeOf(time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC).Add(time.Duration(n) * time.Second))
	nn := n
	return &fxAll{
		S: s, Untagged: s + s, I: int64(n), U: uint16(n), B: b, F32: float32(n) / 3,
		T: t, TP: &t, In: fxInner{A: s, N: &nn, F: float64(n) / 7},
		Strs: []string{s, "", "<&>"}, Ptrs: []*fxInner{{A: "p"}, nil, {A: s}},
		Mid: s, Mid2: s, Mid3: n, After: "x",
		L: List[fxInner]{{A: "l1"}, {A: s}}, LP: List[*fxInner]{nil, {A: "lp"}}, LT: List[Time]{{}, t},
		Nested: List[List[int]]{{1, 2}, {}}, Tags: []tag{{Key: s, Value: s}},
		Rs: []goldenGroup{{ID: "g", Name: s}}, PS: &s,
		FxEmbedded: FxEmbedded{Owner: s, Extra: s},
	}
}

// checkSame marshals v both ways and wants the same bytes; it reports
// whether the fast path took v.
func checkSame(t *testing.T, v any) bool {
	t.Helper()
	var e responseEncoder
	want, werr := MarshalResponse("DescribeThings", "http://ec2.amazonaws.com/doc/2016-11-15/", "rid", v)
	got, gerr := e.marshal("DescribeThings", "http://ec2.amazonaws.com/doc/2016-11-15/", "rid", v)
	if (werr == nil) != (gerr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("fast path differs from encoding/xml for %T:\nfast: %s (%v)\nxml:  %s (%v)", v, got, gerr, want, werr)
	}
	rt := reflect.TypeOf(v)
	if rt == nil {
		return false
	}
	if rt.Kind() == reflect.Pointer {
		rt = rt.Elem()
	}
	if rt.Kind() != reflect.Struct {
		return false
	}
	_, settable := reflect.New(rt).Interface().(requestIDSetter)
	return werr == nil && settable && e.plan(rt) != nil
}

func TestFastXMLSameBytes(t *testing.T) {
	fast := []any{
		fxSample("a'b\"c<d>&e\tf\ng\rh\x00i\xffj☃", 42, true),
		fxSample("", 0, false),
		&fxAll{},
		fxAll{S: "by value"},
		keyPairsResponse(3),
		&describeRegionsResponse{},
		describeThingsResponse{Things: makeThings(2), NextToken: "t"},
		goldenDescribeInstances{Reservations: List[goldenReservation]{{ID: "r", Instances: List[goldenInstance]{{ID: "i"}}}}},
		&ResponseMeta{},
	}
	for _, v := range fast {
		if !checkSame(t, v) {
			t.Errorf("%T did not take the fast path", v)
		}
	}
	type withAttr struct {
		ResponseMeta
		A string `xml:"a,attr"`
	}
	type withIface struct {
		ResponseMeta
		V any `xml:"v"`
	}
	type withNestedName struct {
		ResponseMeta
		N struct {
			XMLName xml.Name `xml:"renamed"`
			A       string   `xml:"a"`
		} `xml:"n"`
	}
	type withConflict struct {
		ResponseMeta
		A string `xml:"a"`
		B string `xml:"a>b"`
	}
	type withBytes struct {
		ResponseMeta
		B []byte `xml:"b"`
	}
	type withTimeTime struct {
		ResponseMeta
		T time.Time `xml:"t"`
	}
	type withMap struct {
		ResponseMeta
		M map[string]string `xml:"m"`
	}
	slow := []any{
		&withAttr{A: "x"}, &withIface{V: 3}, &withNestedName{}, &withConflict{A: "1", B: "2"},
		&withBytes{B: []byte("x")}, &withTimeTime{T: time.Unix(0, 0)}, &withMap{M: map[string]string{"a": "b"}},
		nil, struct{ X int }{1},
	}
	for _, v := range slow {
		if checkSame(t, v) {
			t.Errorf("%T took the fast path", v)
		}
	}
}

// FuzzFastXML is differential: for any strings and numbers, the fast
// path writes what encoding/xml writes.
func FuzzFastXML(f *testing.F) {
	f.Add("plain", 1, true)
	f.Add("a'b\"c<d>&e\tf\ng\rh\x00i\xffj☃\U0001F600\uFFFE\uFFFD", -7, false)
	f.Add("\xed\xa0\x80", 1<<40, true)
	f.Fuzz(func(t *testing.T, s string, n int, b bool) {
		checkSame(t, fxSample(s, n, b))
		if tm := time.Unix(int64(n), int64(n)); string(appendTime(nil, tm)) != tm.UTC().Format(TimeFormat) {
			t.Fatalf("appendTime(%v)", tm)
		}
	})
}

func TestAppendTime(t *testing.T) {
	for _, tm := range []time.Time{
		time.Date(2026, 11, 24, 20, 45, 42, 999999999, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 0, time.FixedZone("x", -3600)),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Unix(1<<33, 123456789),
	} {
		if got, want := string(appendTime(nil, tm)), tm.UTC().Format(TimeFormat); got != want {
			t.Errorf("appendTime(%v) = %s, want %s", tm, got, want)
		}
	}
}

func BenchmarkFastMarshal1000(b *testing.B) {
	resp := keyPairsResponse(1000)
	var e responseEncoder
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := e.marshal("DescribeKeyPairs", "http://ec2.amazonaws.com/doc/2016-11-15/", "id", resp); err != nil {
			b.Fatal(err)
		}
	}
}
