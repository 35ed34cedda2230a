package ec2

import (
	"encoding"
	"encoding/xml"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// responseEncoder writes responses several times faster than
// encoding/xml, byte for byte as MarshalResponse (encoding/xml) does, for
// the shapes EC2 responses have: structs of strings, numbers, booleans,
// Time, List, slices, pointers and nested structs, with `xml:"name"`,
// `xml:"a>b"`, `xml:"-"` and omitempty. A type with anything else (attributes,
// chardata, innerxml, namespaces, XMLName below the root, interfaces, maps,
// other marshalers) is handed to encoding/xml whole. Plans are cached per
// type, per Server.
type responseEncoder struct {
	plans sync.Map // reflect.Type → *typePlan (nil plan: use encoding/xml)
}

// typePlan is how to write one struct type's fields.
type typePlan struct {
	fields []fieldPlan
	size   atomic.Int64 // the last answer's length: the next one's buffer
}

type fieldPlan struct {
	index     []int
	parents   []string
	name      string
	omitEmpty bool
	val       *valuePlan
}

// valuePlan is how to write one value of a type.
type valuePlan struct {
	kind   reflect.Kind
	isTime bool
	isList bool       // List[T]: a wrapper element with an <item> per member
	elem   *valuePlan // pointer, slice and List members
	strct  *typePlan  // struct
}

var (
	timeType          = reflect.TypeOf(Time{})
	xmlNameType       = reflect.TypeOf(xml.Name{})
	marshalerType     = reflect.TypeOf((*xml.Marshaler)(nil)).Elem()
	textMarshalerType = reflect.TypeOf((*encoding.TextMarshaler)(nil)).Elem()
	listMarkerType    = reflect.TypeOf((*interface{ isEC2List() })(nil)).Elem()
)

func (l List[T]) isEC2List() {}

// plan returns the plan of the struct type t, or nil when encoding/xml
// must write it.
func (e *responseEncoder) plan(t reflect.Type) *typePlan {
	if p, ok := e.plans.Load(t); ok {
		return p.(*typePlan)
	}
	p, ok := buildStructPlan(t, true, map[reflect.Type]bool{})
	if !ok {
		p = nil
	}
	e.plans.Store(t, p)
	return p
}

func isMarshaler(t reflect.Type) bool {
	pt := reflect.PointerTo(t)
	return t.Implements(marshalerType) || pt.Implements(marshalerType) ||
		t.Implements(textMarshalerType) || pt.Implements(textMarshalerType)
}

func buildValuePlan(t reflect.Type, seen map[reflect.Type]bool) (*valuePlan, bool) {
	if t.Kind() == reflect.Pointer { // what matters is what it points to
		elem, ok := buildValuePlan(t.Elem(), seen)
		if !ok || elem.kind == reflect.Pointer {
			return nil, false
		}
		return &valuePlan{kind: reflect.Pointer, elem: elem}, true
	}
	switch {
	case t == timeType:
		return &valuePlan{kind: reflect.Struct, isTime: true}, true
	case t.Implements(listMarkerType):
		elem, ok := buildValuePlan(t.Elem(), seen)
		if !ok {
			return nil, false
		}
		return &valuePlan{kind: reflect.Slice, isList: true, elem: elem}, true
	case isMarshaler(t):
		return nil, false
	}
	switch k := t.Kind(); k {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64:
		return &valuePlan{kind: k}, true
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil, false
		}
		elem, ok := buildValuePlan(t.Elem(), seen)
		if !ok || elem.kind == reflect.Slice && !elem.isList {
			return nil, false
		}
		return &valuePlan{kind: k, elem: elem}, true
	case reflect.Struct:
		sp, ok := buildStructPlan(t, false, seen)
		return &valuePlan{kind: k, strct: sp}, ok
	}
	return nil, false
}

// buildStructPlan follows encoding/xml's typeInfo for the supported
// subset; root is the response type, whose XMLName (if any) the wire
// layer overrides.
func buildStructPlan(t reflect.Type, root bool, seen map[reflect.Type]bool) (*typePlan, bool) {
	if t.Kind() != reflect.Struct || seen[t] || isMarshaler(t) {
		return nil, false
	}
	seen[t] = true
	defer delete(seen, t)
	p := &typePlan{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.PkgPath != "" && !f.Anonymous {
			continue
		}
		tag := f.Tag.Get("xml")
		if f.Anonymous && tag == "" {
			if f.PkgPath != "" || f.Type.Kind() != reflect.Struct || isMarshaler(f.Type) {
				return nil, false
			}
			inner, ok := buildStructPlan(f.Type, false, seen)
			if !ok {
				return nil, false
			}
			for _, fp := range inner.fields {
				fp.index = append([]int{i}, fp.index...)
				p.fields = append(p.fields, fp)
			}
			continue
		}
		if f.PkgPath != "" || tag == "-" {
			continue
		}
		if f.Name == "XMLName" || f.Type == xmlNameType {
			if root && f.Type == xmlNameType {
				continue
			}
			return nil, false
		}
		name, opts, _ := strings.Cut(tag, ",")
		fp := fieldPlan{index: []int{i}}
		for _, o := range strings.Split(opts, ",") {
			switch o {
			case "":
			case "omitempty":
				fp.omitEmpty = true
			default:
				return nil, false // attr, chardata, innerxml, any, comment, cdata
			}
		}
		if strings.ContainsAny(name, " \t") {
			return nil, false // a namespace
		}
		if name == "" {
			name = f.Name
		}
		parts := strings.Split(name, ">")
		for _, part := range parts {
			if part == "" {
				return nil, false
			}
		}
		fp.parents, fp.name = parts[:len(parts)-1], parts[len(parts)-1]
		vp, ok := buildValuePlan(f.Type, seen)
		if !ok {
			return nil, false
		}
		fp.val = vp
		p.fields = append(p.fields, fp)
	}
	if pathsConflict(p.fields) {
		return nil, false // encoding/xml's own rules decide which field wins
	}
	return p, true
}

// pathsConflict reports two fields whose element paths are equal or one
// a prefix of the other ("a" and "a>b").
func pathsConflict(fs []fieldPlan) bool {
	path := func(f fieldPlan) []string { return append(append([]string(nil), f.parents...), f.name) }
	for i := range fs {
		pi := path(fs[i])
		for j := i + 1; j < len(fs); j++ {
			pj := path(fs[j])
			n := min(len(pi), len(pj))
			same := true
			for k := 0; k < n; k++ {
				if pi[k] != pj[k] {
					same = false
					break
				}
			}
			if same {
				return true
			}
		}
	}
	return false
}

// marshal writes the answer like MarshalResponse, through the fast path
// when the type allows it.
func (e *responseEncoder) marshal(action, ns, requestID string, v any) ([]byte, error) {
	if v == nil {
		v = &ResponseMeta{}
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Struct {
		p := reflect.New(rv.Type())
		p.Elem().Set(rv)
		rv = p
		v = p.Interface()
	}
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return MarshalResponse(action, ns, requestID, v)
	}
	plan := e.plan(rv.Elem().Type())
	s, ok := v.(requestIDSetter)
	if plan == nil || !ok {
		return MarshalResponse(action, ns, requestID, v)
	}
	s.SetRequestID(requestID)
	root := action + "Response"
	b := make([]byte, 0, max(4096, plan.size.Load()+plan.size.Load()/8))
	b = append(b, xml.Header...)
	b = append(b, '<')
	b = append(b, root...)
	b = append(b, ` xmlns="`...)
	b = appendEscaped(b, ns)
	b = append(b, `">`...)
	b = appendStruct(b, plan, rv.Elem())
	b = append(b, "</"...)
	b = append(b, root...)
	b = append(b, '>')
	plan.size.Store(int64(len(b)))
	return b, nil
}

// appendTime is t.UTC().AppendFormat(b, TimeFormat), without the layout
// parsing that makes that the slowest part of a big answer.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	if y < 0 || y > 9999 {
		return t.AppendFormat(b, TimeFormat)
	}
	h, mi, s := t.Clock()
	ms := t.Nanosecond() / 1e6
	b = append(b, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-')
	b = append(b, byte('0'+int(mo)/10), byte('0'+int(mo)%10), '-', byte('0'+d/10), byte('0'+d%10), 'T')
	b = append(b, byte('0'+h/10), byte('0'+h%10), ':', byte('0'+mi/10), byte('0'+mi%10), ':')
	b = append(b, byte('0'+s/10), byte('0'+s%10), '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
	return b
}

func appendStart(b []byte, name string) []byte {
	b = append(b, '<')
	b = append(b, name...)
	return append(b, '>')
}

func appendEnd(b []byte, name string) []byte {
	b = append(b, "</"...)
	b = append(b, name...)
	return append(b, '>')
}

// appendStruct writes a struct's fields, opening and closing the parent
// elements of a>b tags exactly as encoding/xml's parentStack does.
func appendStruct(b []byte, p *typePlan, v reflect.Value) []byte {
	var stack []string
	for i := range p.fields {
		f := &p.fields[i]
		fv := v.Field(f.index[0])
		for _, x := range f.index[1:] {
			fv = fv.Field(x)
		}
		// trim: close the open parents this field does not share.
		split := 0
		for split < len(f.parents) && split < len(stack) && f.parents[split] == stack[split] {
			split++
		}
		for j := len(stack) - 1; j >= split; j-- {
			b = appendEnd(b, stack[j])
		}
		stack = stack[:split]
		if len(f.parents) > len(stack) && (fv.Kind() != reflect.Pointer || !fv.IsNil()) {
			for _, par := range f.parents[len(stack):] {
				b = appendStart(b, par)
			}
			stack = append(stack, f.parents[len(stack):]...)
		}
		if f.omitEmpty && isEmpty(fv) {
			continue
		}
		b = appendValue(b, f.name, f.val, fv)
	}
	for j := len(stack) - 1; j >= 0; j-- {
		b = appendEnd(b, stack[j])
	}
	return b
}

func isEmpty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return v.Float() == 0
	case reflect.Pointer:
		return v.IsNil()
	}
	return false
}

func appendValue(b []byte, name string, p *valuePlan, v reflect.Value) []byte {
	switch {
	case p.isTime:
		t, _ := reflect.TypeAssert[Time](v)
		if t.IsZero() {
			return b
		}
		b = appendStart(b, name)
		b = appendTime(b, t.Time)
		return appendEnd(b, name)
	case p.isList:
		b = appendStart(b, name)
		for i, n := 0, v.Len(); i < n; i++ {
			b = appendValue(b, "item", p.elem, v.Index(i))
		}
		return appendEnd(b, name)
	}
	switch p.kind {
	case reflect.Pointer:
		if v.IsNil() {
			return b
		}
		return appendValue(b, name, p.elem, v.Elem())
	case reflect.Slice:
		for i, n := 0, v.Len(); i < n; i++ {
			b = appendValue(b, name, p.elem, v.Index(i))
		}
		return b
	case reflect.Struct:
		b = appendStart(b, name)
		b = appendStruct(b, p.strct, v)
		return appendEnd(b, name)
	}
	b = appendStart(b, name)
	switch p.kind {
	case reflect.String:
		b = appendEscaped(b, v.String())
	case reflect.Bool:
		b = strconv.AppendBool(b, v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		b = strconv.AppendInt(b, v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		b = strconv.AppendUint(b, v.Uint(), 10)
	case reflect.Float32:
		b = strconv.AppendFloat(b, v.Float(), 'g', -1, 32)
	case reflect.Float64:
		b = strconv.AppendFloat(b, v.Float(), 'g', -1, 64)
	}
	return appendEnd(b, name)
}

// appendEscaped escapes s as encoding/xml's EscapeString does.
func appendEscaped(b []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\'' && c != '&' && c != '<' && c != '>' {
			i++
			continue
		}
		r, width := utf8.DecodeRuneInString(s[i:])
		i += width
		var esc string
		switch r {
		case '"':
			esc = "&#34;"
		case '\'':
			esc = "&#39;"
		case '&':
			esc = "&amp;"
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '\t':
			esc = "&#x9;"
		case '\n':
			esc = "&#xA;"
		case '\r':
			esc = "&#xD;"
		default:
			if !isInCharacterRange(r) || (r == utf8.RuneError && width == 1) {
				esc = "\uFFFD"
				break
			}
			continue
		}
		b = append(b, s[last:i-width]...)
		b = append(b, esc...)
		last = i
	}
	return append(b, s[last:]...)
}

func isInCharacterRange(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}
