package roll

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// element is one XML element with the line it starts on, read by readXML.
// Node, graph and manifest files are interpreted from this tree so that
// every error can name file:line.
type element struct {
	Name     string
	Attrs    []xml.Attr
	Children []*element
	Text     string // character data directly inside, CDATA included
	Line     int
}

// Limits on what one XML file may hold: a roll is user input.
const (
	maxXMLSize  = 8 << 20
	maxXMLDepth = 32
)

// PosError is an error at a position in a roll's file.
type PosError struct {
	Pos string // roll:file:line, or file:line
	Err error
}

func (e *PosError) Error() string { return e.Pos + ": " + e.Err.Error() }
func (e *PosError) Unwrap() error { return e.Err }

func posErr(pos string, format string, args ...any) error {
	return &PosError{Pos: pos, Err: fmt.Errorf(format, args...)}
}

// readXML parses data into its root element. file names the data in
// errors.
func readXML(file string, data []byte) (*element, error) {
	if len(data) > maxXMLSize {
		return nil, posErr(file, "larger than %d bytes", maxXMLSize)
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	lineAt := func(off int64) int {
		i := int(off)
		for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
			i++
		}
		return 1 + bytes.Count(data[:min(i, len(data))], []byte{'\n'})
	}
	var root *element
	var stack []*element
	for {
		off := d.InputOffset()
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var se *xml.SyntaxError
			if errors.As(err, &se) {
				return nil, posErr(fmt.Sprintf("%s:%d", file, se.Line), "%s", se.Msg)
			}
			return nil, posErr(fmt.Sprintf("%s:%d", file, lineAt(off)), "%v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Space != "" {
				return nil, posErr(fmt.Sprintf("%s:%d", file, lineAt(off)), "namespaced element <%s:%s> not allowed", t.Name.Space, t.Name.Local)
			}
			e := &element{Name: t.Name.Local, Attrs: append([]xml.Attr(nil), t.Attr...), Line: lineAt(off)}
			if len(stack) == 0 {
				if root != nil {
					return nil, posErr(fmt.Sprintf("%s:%d", file, e.Line), "second root element <%s>", e.Name)
				}
				root = e
			} else {
				p := stack[len(stack)-1]
				p.Children = append(p.Children, e)
			}
			if len(stack) >= maxXMLDepth {
				return nil, posErr(fmt.Sprintf("%s:%d", file, e.Line), "nested deeper than %d", maxXMLDepth)
			}
			stack = append(stack, e)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].Text += string(t)
			} else if strings.TrimSpace(string(t)) != "" {
				return nil, posErr(fmt.Sprintf("%s:%d", file, lineAt(off)), "text outside the root element")
			}
		}
	}
	if root == nil {
		return nil, posErr(file, "no root element")
	}
	return root, nil
}

// attr returns the element's attribute name, and whether it is there.
func (e *element) attr(name string) (string, bool) {
	for _, a := range e.Attrs {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

// checkAttrs refuses attributes not in allowed.
func (e *element) checkAttrs(file string, allowed ...string) error {
	for _, a := range e.Attrs {
		ok := false
		for _, n := range allowed {
			if a.Name.Space == "" && a.Name.Local == n {
				ok = true
				break
			}
		}
		if !ok {
			name := a.Name.Local
			if a.Name.Space != "" {
				name = a.Name.Space + ":" + name
			}
			return posErr(fmt.Sprintf("%s:%d", file, e.Line), "<%s>: unknown attribute %q", e.Name, name)
		}
	}
	return nil
}

// noChildren refuses child elements (for elements that hold only text).
func (e *element) noChildren(file string) error {
	if len(e.Children) > 0 {
		c := e.Children[0]
		return posErr(fmt.Sprintf("%s:%d", file, c.Line), "unknown tag <%s> inside <%s>", c.Name, e.Name)
	}
	return nil
}
