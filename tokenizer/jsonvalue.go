package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ardanlabs/jinja"
)

// jsonToValue decodes JSON into a template value keeping the key order of
// objects (Python dicts keep insertion order, and tool schemas rendered with
// tojson must come out as the client sent them).
func jsonToValue(raw []byte) (jinja.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return jinja.Value{}, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return jinja.Value{}, fmt.Errorf("trailing data after JSON value")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder) (jinja.Value, error) {
	tok, err := dec.Token()
	if err != nil {
		return jinja.Value{}, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '[':
			var items []jinja.Value
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return jinja.Value{}, err
				}
				items = append(items, v)
			}
			if _, err := dec.Token(); err != nil {
				return jinja.Value{}, err
			}
			return jinja.NewList(items), nil
		case '{':
			d := jinja.NewDict()
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return jinja.Value{}, err
				}
				key, _ := kt.(string)
				v, err := decodeValue(dec)
				if err != nil {
					return jinja.Value{}, err
				}
				d.AsDict().Set(key, v)
			}
			if _, err := dec.Token(); err != nil {
				return jinja.Value{}, err
			}
			return d, nil
		}
		return jinja.Value{}, fmt.Errorf("unexpected %v", t)
	case nil:
		return jinja.None(), nil
	default:
		return jinja.FromGoValue(t), nil
	}
}

// pyToJSON is transformers' tojson filter: Python's json.dumps with
// ensure_ascii=False and the indent, separators and sort_keys arguments.
func pyToJSON(args []jinja.Value, kwargs map[string]jinja.Value) (jinja.Value, error) {
	if len(args) == 0 {
		return jinja.Undefined(), fmt.Errorf("tojson: missing value")
	}
	e := pyJSONEncoder{itemSep: ", ", keySep: ": ", indent: -1}
	if v, ok := kwargs["indent"]; ok && v.IsNumber() {
		e.indent = int(v.AsInt())
		e.itemSep = ","
	} else if ok && v.IsString() {
		e.indentStr, e.indent, e.itemSep = v.AsString(), 0, ","
	}
	if e.indent > 0 {
		e.indentStr = strings.Repeat(" ", e.indent)
	}
	if v, ok := kwargs["separators"]; ok && v.IsList() && v.AsList().Len() == 2 {
		items := v.AsList().Items
		e.itemSep, e.keySep = items[0].AsString(), items[1].AsString()
	}
	if v, ok := kwargs["sort_keys"]; ok {
		e.sortKeys = v.IsTruthy()
	}
	if v, ok := kwargs["ensure_ascii"]; ok {
		e.ensureASCII = v.IsTruthy()
	}
	var sb strings.Builder
	if err := e.encode(&sb, args[0], 0); err != nil {
		return jinja.Undefined(), fmt.Errorf("tojson: %w", err)
	}
	return jinja.NewString(sb.String()), nil
}

type pyJSONEncoder struct {
	itemSep, keySep string
	indent          int // -1: no newlines
	indentStr       string
	sortKeys        bool
	ensureASCII     bool
}

func (e *pyJSONEncoder) newline(sb *strings.Builder, level int) {
	if e.indent < 0 {
		return
	}
	sb.WriteByte('\n')
	for i := 0; i < level; i++ {
		sb.WriteString(e.indentStr)
	}
}

func (e *pyJSONEncoder) encode(sb *strings.Builder, v jinja.Value, level int) error {
	switch {
	case v.IsUndefined(), v.IsNone():
		sb.WriteString("null")
	case v.IsBool():
		sb.WriteString(strconv.FormatBool(v.AsBool()))
	case v.IsInt():
		sb.WriteString(strconv.FormatInt(v.AsInt(), 10))
	case v.IsFloat():
		sb.WriteString(pyFloatRepr(v.AsFloat()))
	case v.IsString():
		e.encodeString(sb, v.AsString())
	case v.IsList():
		items := v.AsList().Items
		if len(items) == 0 {
			sb.WriteString("[]")
			return nil
		}
		sb.WriteByte('[')
		for i, it := range items {
			if i > 0 {
				sb.WriteString(e.itemSep)
			}
			e.newline(sb, level+1)
			if err := e.encode(sb, it, level+1); err != nil {
				return err
			}
		}
		e.newline(sb, level)
		sb.WriteByte(']')
	case v.IsDict():
		d := v.AsDict()
		keys := append([]string(nil), d.Keys...)
		if len(keys) == 0 {
			sb.WriteString("{}")
			return nil
		}
		if e.sortKeys {
			sort.Strings(keys)
		}
		sb.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				sb.WriteString(e.itemSep)
			}
			e.newline(sb, level+1)
			e.encodeString(sb, k)
			sb.WriteString(e.keySep)
			if err := e.encode(sb, d.Data[k], level+1); err != nil {
				return err
			}
		}
		e.newline(sb, level)
		sb.WriteByte('}')
	default:
		return fmt.Errorf("cannot encode a callable")
	}
	return nil
}

func (e *pyJSONEncoder) encodeString(sb *strings.Builder, s string) {
	sb.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			sb.WriteString(`\"`)
		case '\\':
			sb.WriteString(`\\`)
		case '\n':
			sb.WriteString(`\n`)
		case '\r':
			sb.WriteString(`\r`)
		case '\t':
			sb.WriteString(`\t`)
		case '\b':
			sb.WriteString(`\b`)
		case '\f':
			sb.WriteString(`\f`)
		default:
			switch {
			case r < 0x20:
				fmt.Fprintf(sb, `\u%04x`, r)
			case e.ensureASCII && r > 0x7e:
				writeASCIIEscape(sb, r)
			default:
				sb.WriteRune(r)
			}
		}
	}
	sb.WriteByte('"')
}

func writeASCIIEscape(sb *strings.Builder, r rune) {
	if r == utf8.RuneError || r < 0x10000 {
		fmt.Fprintf(sb, `\u%04x`, r)
		return
	}
	r -= 0x10000
	fmt.Fprintf(sb, `\u%04x\u%04x`, 0xD800+(r>>10), 0xDC00+(r&0x3FF))
}

// pyFloatRepr formats f as Python's float repr: shortest round-trip digits,
// fixed notation for exponents in [-4, 16), always with a decimal point.
func pyFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	sci := strconv.FormatFloat(f, 'e', -1, 64)
	mant, expStr, _ := strings.Cut(sci, "e")
	exp, _ := strconv.Atoi(expStr)
	if exp < -4 || exp >= 16 {
		return mant + "e" + pyExp(exp)
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

func pyExp(exp int) string {
	sign := "+"
	if exp < 0 {
		sign, exp = "-", -exp
	}
	return fmt.Sprintf("%s%02d", sign, exp)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
