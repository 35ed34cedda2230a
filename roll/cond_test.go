package roll

import "testing"

func TestCond(t *testing.T) {
	attrs := map[string]string{
		"xen": "yes", "kvm": "Off", "cpus": "8", "mem": "1.5", "name": "compute-0-0",
		"y": "Y", "zero": "0", "empty": "", "version": "10",
	}
	cases := []struct {
		cond string
		want bool
	}{
		{"", true},
		{"xen", true},
		{"kvm", false},
		{"not kvm", true},
		{"! kvm", true},
		{"y", true},
		{"missing", false},
		{"not missing", true},
		{"missing == false", true},
		{"xen == true", true},
		{"xen == 'yes'", false}, // coerced to a bool first, as in Rocks
		{"cpus > 4", true},
		{"cpus >= 8 and cpus <= 8", true},
		{"cpus < 4", false},
		{"cpus == 8.0", true},
		{"mem > 1", true},
		{"mem < 2", true},
		{"version > 9", true}, // numbers, not strings: "10" < "9" as text
		{"name == 'compute-0-0'", true},
		{`name == "compute-0-0"`, true},
		{"name != 'compute-0-0'", false},
		{"name > 3", false}, // string and number do not order
		{"name != 3", true},
		{"zero", false},
		{"empty", false},
		{"xen and kvm", false},
		{"xen or kvm", true},
		{"xen && !kvm", true},
		{"kvm || missing", false},
		{"not (xen and kvm) and (cpus == 8 or missing)", true},
		{"xen and not kvm or missing", true},
		{"not xen or cpus > 100", false},
		{"-1 < zero", true},
		{"true", true},
		{"False", false},
	}
	for _, c := range cases {
		cd, err := ParseCond(c.cond)
		if err != nil {
			t.Errorf("ParseCond(%q): %v", c.cond, err)
			continue
		}
		if got := cd.Eval(attrs); got != c.want {
			t.Errorf("%q = %v, want %v", c.cond, got, c.want)
		}
	}
}

func TestCondParseErrors(t *testing.T) {
	for _, s := range []string{
		"xen ==", "(xen", "xen)", "and", "xen and", "a = b", "a == == b", "'open",
		"__import__('os').system('x')", "a + b", "1x", "not", "a b", "x[0]", "f(x)",
		"((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((a))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))",
	} {
		if _, err := ParseCond(s); err == nil {
			t.Errorf("ParseCond(%q) accepted", s)
		}
	}
}

func TestCoerce(t *testing.T) {
	cases := []struct {
		in   string
		want Value
	}{
		{"on", Value{Kind: KindBool, Bool: true}},
		{"TRUE", Value{Kind: KindBool, Bool: true}},
		{"Yes", Value{Kind: KindBool, Bool: true}},
		{"y", Value{Kind: KindBool, Bool: true}},
		{"off", Value{Kind: KindBool}},
		{"False", Value{Kind: KindBool}},
		{"no", Value{Kind: KindBool}},
		{"N", Value{Kind: KindBool}},
		{"42", Value{Kind: KindInt, Int: 42}},
		{"-3", Value{Kind: KindInt, Int: -3}},
		{"2.5", Value{Kind: KindFloat, Flt: 2.5}},
		{"1e3", Value{Kind: KindFloat, Flt: 1000}},
		{"nan", Value{Kind: KindString, Str: "nan"}},
		{"Infinity", Value{Kind: KindString, Str: "Infinity"}},
		{"10.1.1.1", Value{Kind: KindString, Str: "10.1.1.1"}},
		{"1024M", Value{Kind: KindString, Str: "1024M"}},
		{"", Value{Kind: KindString, Str: ""}},
	}
	for _, c := range cases {
		if got := Coerce(c.in); got != c.want {
			t.Errorf("Coerce(%q) = %+v, want %+v", c.in, got, c.want)
		}
	}
}
