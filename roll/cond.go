package roll

import (
	"fmt"
	"strconv"
	"strings"
)

// Cond is a parsed condition: the cond= attribute of node file elements,
// edges and orders. The language is deliberately small (Rocks evaluated
// cond with Python's eval; this evaluates nothing but itself):
//
//	expr    = or
//	or      = and { ("or" | "||") and }
//	and     = not { ("and" | "&&") not }
//	not     = ("not" | "!") not | cmp
//	cmp     = operand [ ("==" | "!=" | "<" | "<=" | ">" | ">=") operand ]
//	operand = "(" expr ")" | string | number | "true" | "false" | attribute
//
// Attribute values coerce as Rocks did: on/true/yes/y are true,
// off/false/no/n false (any case), then an integer, a float, else the
// string. An attribute the host does not have is false.
type Cond struct {
	src  string
	root condExpr
}

// ParseCond parses a condition. The empty string is the condition that is
// always true.
func ParseCond(s string) (*Cond, error) {
	if strings.TrimSpace(s) == "" {
		return &Cond{src: s}, nil
	}
	toks, err := lexCond(s)
	if err != nil {
		return nil, fmt.Errorf("condition %q: %w", s, err)
	}
	p := &condParser{toks: toks}
	e, err := p.or(0)
	if err != nil {
		return nil, fmt.Errorf("condition %q: %w", s, err)
	}
	if p.peek().kind != tEOF {
		return nil, fmt.Errorf("condition %q: unexpected %s at offset %d", s, p.peek(), p.peek().off)
	}
	return &Cond{src: s, root: e}, nil
}

// String returns the condition as written.
func (c *Cond) String() string {
	if c == nil {
		return ""
	}
	return c.src
}

// Eval reports whether the condition holds for attrs.
func (c *Cond) Eval(attrs map[string]string) bool {
	if c == nil || c.root == nil {
		return true
	}
	return c.root.eval(attrs).truth()
}

// Value is an attribute value after Rocks' coercion.
type Value struct {
	Kind ValueKind
	Bool bool
	Int  int64
	Flt  float64
	Str  string
}

// ValueKind says which field of a Value holds it.
type ValueKind int

// The kinds of Value.
const (
	KindBool ValueKind = iota
	KindInt
	KindFloat
	KindString
)

// Coerce turns an attribute's text into a Value the way Rocks did.
func Coerce(s string) Value {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on", "true", "yes", "y":
		return Value{Kind: KindBool, Bool: true}
	case "off", "false", "no", "n":
		return Value{Kind: KindBool}
	}
	t := strings.TrimSpace(s)
	if i, err := strconv.ParseInt(t, 10, 64); err == nil {
		return Value{Kind: KindInt, Int: i}
	}
	if f, err := strconv.ParseFloat(t, 64); err == nil && !strings.ContainsAny(strings.ToLower(t), "xnip") {
		return Value{Kind: KindFloat, Flt: f}
	}
	return Value{Kind: KindString, Str: s}
}

func (v Value) truth() bool {
	switch v.Kind {
	case KindBool:
		return v.Bool
	case KindInt:
		return v.Int != 0
	case KindFloat:
		return v.Flt != 0
	default:
		return v.Str != ""
	}
}

func (v Value) num() (float64, bool) {
	switch v.Kind {
	case KindInt:
		return float64(v.Int), true
	case KindFloat:
		return v.Flt, true
	}
	return 0, false
}

// compare returns -1, 0, 1, or ok=false when the two cannot be ordered
// (different kinds that are not both numbers).
func compare(a, b Value) (int, bool) {
	if an, ok := a.num(); ok {
		if bn, ok := b.num(); ok {
			if a.Kind == KindInt && b.Kind == KindInt {
				return cmp3(a.Int, b.Int), true
			}
			return cmp3(an, bn), true
		}
		return 0, false
	}
	if a.Kind != b.Kind {
		return 0, false
	}
	switch a.Kind {
	case KindBool:
		ai, bi := 0, 0
		if a.Bool {
			ai = 1
		}
		if b.Bool {
			bi = 1
		}
		return cmp3(ai, bi), true
	default:
		return strings.Compare(a.Str, b.Str), true
	}
}

func cmp3[T int | int64 | float64](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

type condExpr interface {
	eval(attrs map[string]string) Value
}

type (
	orExpr  struct{ l, r condExpr }
	andExpr struct{ l, r condExpr }
	notExpr struct{ e condExpr }
	cmpExpr struct {
		op   string
		l, r condExpr
	}
	litExpr  struct{ v Value }
	attrExpr struct{ name string }
)

func boolV(b bool) Value { return Value{Kind: KindBool, Bool: b} }

func (e orExpr) eval(a map[string]string) Value {
	return boolV(e.l.eval(a).truth() || e.r.eval(a).truth())
}
func (e andExpr) eval(a map[string]string) Value {
	return boolV(e.l.eval(a).truth() && e.r.eval(a).truth())
}
func (e notExpr) eval(a map[string]string) Value { return boolV(!e.e.eval(a).truth()) }
func (e litExpr) eval(map[string]string) Value   { return e.v }
func (e attrExpr) eval(a map[string]string) Value {
	s, ok := a[e.name]
	if !ok {
		return boolV(false)
	}
	return Coerce(s)
}

func (e cmpExpr) eval(a map[string]string) Value {
	c, ok := compare(e.l.eval(a), e.r.eval(a))
	switch e.op {
	case "==":
		return boolV(ok && c == 0)
	case "!=":
		return boolV(!ok || c != 0)
	case "<":
		return boolV(ok && c < 0)
	case "<=":
		return boolV(ok && c <= 0)
	case ">":
		return boolV(ok && c > 0)
	case ">=":
		return boolV(ok && c >= 0)
	}
	return boolV(false)
}

type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tString
	tNumber
	tOp
	tLParen
	tRParen
)

type condTok struct {
	kind tokKind
	text string
	off  int
}

func (t condTok) String() string {
	switch t.kind {
	case tEOF:
		return "end of condition"
	case tString:
		return strconv.Quote(t.text)
	}
	return strconv.Quote(t.text)
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentPart(c byte) bool {
	return isIdentStart(c) || (c >= '0' && c <= '9') || c == '.'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func lexCond(s string) ([]condTok, error) {
	var toks []condTok
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(':
			toks = append(toks, condTok{tLParen, "(", i})
			i++
		case c == ')':
			toks = append(toks, condTok{tRParen, ")", i})
			i++
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(s) && s[j] != c {
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string at offset %d", i)
			}
			toks = append(toks, condTok{tString, s[i+1 : j], i})
			i = j + 1
		case isDigit(c) || (c == '-' && i+1 < len(s) && isDigit(s[i+1])):
			j := i + 1
			for j < len(s) && (isDigit(s[j]) || s[j] == '.') {
				j++
			}
			if j < len(s) && isIdentStart(s[j]) {
				return nil, fmt.Errorf("bad number %q at offset %d", s[i:j+1], i)
			}
			toks = append(toks, condTok{tNumber, s[i:j], i})
			i = j
		case isIdentStart(c):
			j := i + 1
			for j < len(s) && isIdentPart(s[j]) {
				j++
			}
			toks = append(toks, condTok{tIdent, s[i:j], i})
			i = j
		default:
			two := ""
			if i+1 < len(s) {
				two = s[i : i+2]
			}
			switch two {
			case "==", "!=", "<=", ">=", "&&", "||":
				toks = append(toks, condTok{tOp, two, i})
				i += 2
				continue
			}
			switch c {
			case '<', '>', '!':
				toks = append(toks, condTok{tOp, string(c), i})
				i++
				continue
			}
			return nil, fmt.Errorf("unexpected character %q at offset %d", c, i)
		}
	}
	return append(toks, condTok{kind: tEOF, off: len(s)}), nil
}

// maxCondDepth bounds nesting so a hostile condition cannot exhaust the
// stack.
const maxCondDepth = 64

type condParser struct {
	toks []condTok
	pos  int
}

func (p *condParser) peek() condTok { return p.toks[p.pos] }
func (p *condParser) next() condTok {
	t := p.toks[p.pos]
	if t.kind != tEOF {
		p.pos++
	}
	return t
}

func (p *condParser) isWord(words ...string) bool {
	t := p.peek()
	for _, w := range words {
		if (t.kind == tIdent || t.kind == tOp) && t.text == w {
			return true
		}
	}
	return false
}

func (p *condParser) or(d int) (condExpr, error) {
	l, err := p.and(d)
	if err != nil {
		return nil, err
	}
	for p.isWord("or", "||") {
		p.next()
		r, err := p.and(d)
		if err != nil {
			return nil, err
		}
		l = orExpr{l, r}
	}
	return l, nil
}

func (p *condParser) and(d int) (condExpr, error) {
	l, err := p.not(d)
	if err != nil {
		return nil, err
	}
	for p.isWord("and", "&&") {
		p.next()
		r, err := p.not(d)
		if err != nil {
			return nil, err
		}
		l = andExpr{l, r}
	}
	return l, nil
}

func (p *condParser) not(d int) (condExpr, error) {
	if d > maxCondDepth {
		return nil, fmt.Errorf("nested deeper than %d", maxCondDepth)
	}
	if p.isWord("not", "!") {
		p.next()
		e, err := p.not(d + 1)
		if err != nil {
			return nil, err
		}
		return notExpr{e}, nil
	}
	return p.cmp(d)
}

func (p *condParser) cmp(d int) (condExpr, error) {
	l, err := p.operand(d)
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind == tOp {
		switch t.text {
		case "==", "!=", "<", "<=", ">", ">=":
			p.next()
			r, err := p.operand(d)
			if err != nil {
				return nil, err
			}
			return cmpExpr{t.text, l, r}, nil
		}
	}
	return l, nil
}

var keywords = map[string]bool{"and": true, "or": true, "not": true}

func (p *condParser) operand(d int) (condExpr, error) {
	t := p.next()
	switch t.kind {
	case tLParen:
		if d > maxCondDepth {
			return nil, fmt.Errorf("nested deeper than %d", maxCondDepth)
		}
		e, err := p.or(d + 1)
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tRParen {
			return nil, fmt.Errorf("want ) at offset %d, have %s", c.off, c)
		}
		return e, nil
	case tString:
		return litExpr{Value{Kind: KindString, Str: t.text}}, nil
	case tNumber:
		v := Coerce(t.text)
		if v.Kind != KindInt && v.Kind != KindFloat {
			return nil, fmt.Errorf("bad number %q at offset %d", t.text, t.off)
		}
		return litExpr{v}, nil
	case tIdent:
		if keywords[t.text] {
			return nil, fmt.Errorf("unexpected %q at offset %d", t.text, t.off)
		}
		switch strings.ToLower(t.text) {
		case "true":
			return litExpr{boolV(true)}, nil
		case "false":
			return litExpr{boolV(false)}, nil
		}
		return attrExpr{t.text}, nil
	}
	return nil, fmt.Errorf("want a value at offset %d, have %s", t.off, t)
}
