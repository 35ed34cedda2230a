package ec2

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func params(t *testing.T, q string) Params {
	t.Helper()
	v, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	return NewParams(v)
}

func code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

func TestScalars(t *testing.T) {
	p := params(t, "KeyName=k1&Empty=&MinCount=3&Bad=3x&DryRun=TRUE&No=false&Junk=maybe&Big=99999")
	if s, err := p.Required("KeyName"); s != "k1" || err != nil {
		t.Errorf("Required = %q, %v", s, err)
	}
	for _, name := range []string{"Empty", "Nope"} {
		if _, err := p.Required(name); code(err) != CodeMissingParameter {
			t.Errorf("Required(%s) = %v, want MissingParameter", name, err)
		}
	}
	if got := p.Optional("Empty", "d"); got != "d" {
		t.Errorf("Optional(Empty) = %q", got)
	}
	if n, err := p.Int("MinCount", 1); n != 3 || err != nil {
		t.Errorf("Int = %d, %v", n, err)
	}
	if n, err := p.Int("Absent", 7); n != 7 || err != nil {
		t.Errorf("Int default = %d, %v", n, err)
	}
	if _, err := p.Int("Bad", 1); code(err) != CodeInvalidParameterValue {
		t.Errorf("Int(Bad) = %v", err)
	}
	if _, err := p.RequiredInt("Absent"); code(err) != CodeMissingParameter {
		t.Errorf("RequiredInt(Absent) = %v", err)
	}
	if _, err := p.IntRange("Big", 1, 1, 1000); code(err) != CodeInvalidParameterValue ||
		!strings.Contains(err.Error(), "between 1 and 1000") {
		t.Errorf("IntRange(Big) = %v", err)
	}
	if b, err := p.Bool("DryRun", false); !b || err != nil {
		t.Errorf("Bool(DryRun) = %v, %v", b, err)
	}
	if b, err := p.Bool("No", true); b || err != nil {
		t.Errorf("Bool(No) = %v, %v", b, err)
	}
	if _, err := p.Bool("Junk", false); code(err) != CodeInvalidParameterValue {
		t.Errorf("Bool(Junk) = %v", err)
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		q    string
		want []string
		code string
	}{
		{"", nil, ""},
		{"InstanceId.1=a&InstanceId.2=b", []string{"a", "b"}, ""},
		{"InstanceId.10=j&InstanceId.2=b&InstanceId.1=a", []string{"a", "b", "j"}, ""},
		{"InstanceId.3=c&InstanceId.1=a", []string{"a", "c"}, ""}, // gap
		{"InstanceId.x=a", nil, CodeUnknownParameter},
		{"InstanceId.1.Foo=a", nil, CodeUnknownParameter},
		{"InstanceIdX.1=a&InstanceId=b", nil, ""}, // neither is a member
	}
	for _, tt := range tests {
		got, err := params(t, tt.q).Strings("InstanceId")
		if code(err) != tt.code || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Strings(%q) = %q, %v; want %q, %s", tt.q, got, err, tt.want, tt.code)
		}
	}
}

func TestNestedLists(t *testing.T) {
	q := url.Values{}
	add := func(k, v string) { q.Add(k, v) }
	add("GroupId", "sg-1")
	add("IpPermissions.2.IpProtocol", "udp")
	add("IpPermissions.1.IpProtocol", "tcp")
	add("IpPermissions.1.FromPort", "22")
	add("IpPermissions.1.IpRanges.2.CidrIp", "10.0.0.0/8")
	add("IpPermissions.1.IpRanges.1.CidrIp", "0.0.0.0/0")
	add("IpPermissions.1.IpRanges.1.Description", "all")
	add("IpPermissions.10.IpProtocol", "icmp")
	add("IpPermissions.2.Groups.1.GroupId", "sg-2")
	p := NewParams(q)
	perms, err := p.List("IpPermissions")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, perm := range perms {
		line := perm.Prefix() + perm.String("IpProtocol")
		ranges, err := perm.List("IpRanges")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range ranges {
			line += " " + r.String("CidrIp") + "/" + r.String("Description")
		}
		groups, _ := perm.List("Groups")
		for _, g := range groups {
			line += " " + g.String("GroupId")
		}
		got = append(got, line)
	}
	want := []string{
		"IpPermissions.1.tcp 0.0.0.0/0/all 10.0.0.0/8/",
		"IpPermissions.2.udp sg-2",
		"IpPermissions.10.icmp",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if perms[0].Len() != 5 {
		t.Errorf("item 1 has %d keys, want 5", perms[0].Len())
	}
	if _, err := perms[0].Required("ToPort"); err == nil || !strings.Contains(err.Error(), "IpPermissions.1.ToPort") {
		t.Errorf("nested MissingParameter = %v", err)
	}
	if err := p.Check("GroupId", "IpPermissions.N.IpProtocol", "IpPermissions.N.FromPort",
		"IpPermissions.N.IpRanges.N.CidrIp", "IpPermissions.N.IpRanges.N.Description",
		"IpPermissions.N.Groups.N.GroupId"); err != nil {
		t.Errorf("Check: %v", err)
	}
	if err := p.Check("GroupId", "IpPermissions.N.IpProtocol"); code(err) != CodeUnknownParameter {
		t.Errorf("Check narrow = %v", err)
	}

	bdm := params(t, "BlockDeviceMapping.1.DeviceName=/dev/sda1&BlockDeviceMapping.1.Ebs.VolumeSize=20"+
		"&TagSpecification.1.ResourceType=instance&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=web"+
		"&TagSpecification.1.Tag.2.Key=env&TagSpecification.1.Tag.2.Value=prod")
	items, err := bdm.List("BlockDeviceMapping")
	if err != nil || len(items) != 1 {
		t.Fatalf("BlockDeviceMapping: %v %v", items, err)
	}
	if n, err := items[0].Sub("Ebs").Int("VolumeSize", 0); n != 20 || err != nil {
		t.Errorf("Ebs.VolumeSize = %d, %v", n, err)
	}
	specs, _ := bdm.List("TagSpecification")
	tags, _ := specs[0].List("Tag")
	if len(tags) != 2 || tags[1].String("Key") != "env" || tags[1].String("Value") != "prod" {
		t.Errorf("tags = %v", tags)
	}
	for _, q := range []string{"Filter.1=x", "Filter.a.Name=x"} {
		if _, err := params(t, q).List("Filter"); code(err) != CodeUnknownParameter {
			t.Errorf("List(%q) = %v, want UnknownParameter", q, err)
		}
	}
}

func TestFilters(t *testing.T) {
	p := params(t, "Filter.1.Name=instance-state-name&Filter.1.Value.1=running&Filter.1.Value.2=pend*"+
		"&Filter.2.Name=tag:Name&Filter.2.Value.1=web-?")
	fs, err := p.Filters()
	if err != nil {
		t.Fatal(err)
	}
	want := Filters{{"instance-state-name", []string{"running", "pend*"}}, {"tag:Name", []string{"web-?"}}}
	if !reflect.DeepEqual(fs, want) {
		t.Fatalf("Filters = %v", fs)
	}
	res := func(state, name string) func(string) []string {
		return func(f string) []string {
			switch f {
			case "instance-state-name":
				return []string{state}
			case "tag:Name":
				return []string{name}
			}
			return nil
		}
	}
	if !fs.Matches(res("pending", "web-1")) || fs.Matches(res("stopped", "web-1")) || fs.Matches(res("running", "web-10")) {
		t.Error("Matches wrong")
	}
	if err := fs.Check("instance-state-name", "tag:*"); err != nil {
		t.Error(err)
	}
	if err := fs.Check("instance-state-name"); code(err) != CodeInvalidParameterValue || !strings.Contains(err.Error(), "'tag:Name'") {
		t.Errorf("Check = %v", err)
	}
	if _, err := params(t, "Filter.1.Value.1=x").Filters(); code(err) != CodeMissingParameter {
		t.Errorf("nameless filter: %v", err)
	}
	if _, err := params(t, "Filter.1.Name=x").Filters(); code(err) != CodeInvalidParameterValue {
		t.Errorf("valueless filter: %v", err)
	}
}

func TestWildcardMatch(t *testing.T) {
	tests := []struct {
		pat, s string
		want   bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "anything", true},
		{"a*", "abc", true},
		{"*c", "abc", true},
		{"a*c", "abxc", true},
		{"a*c", "abxd", false},
		{"?", "é", true},
		{"??", "é", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*a*b*c*", "xxaxxbxxcxx", true},
		{"*a*b*c*", "xxaxxcxxbxx", false},
		{`a\*`, "a*", true},
		{`a\*`, "ab", false},
		{`\?`, "?", true},
		{`\?`, "x", false},
		{`a\\b`, `a\b`, true},
		{`a\`, `a\`, true},
		{"i-*", "i-0123456789abcdef0", true},
		{"Web", "web", false},
		{"**a", "ba", true},
	}
	for _, tt := range tests {
		if got := WildcardMatch(tt.pat, tt.s); got != tt.want {
			t.Errorf("WildcardMatch(%q, %q) = %v", tt.pat, tt.s, got)
		}
	}
	// Pathological patterns stay fast (no exponential backtracking).
	long := strings.Repeat("a", 5000)
	if WildcardMatch(strings.Repeat("*a", 50)+"b", long) {
		t.Error("pathological match")
	}
}

func TestPagination(t *testing.T) {
	var keys []string
	for i := 0; i < 23; i++ {
		keys = append(keys, string(rune('a'+i)))
	}
	id := func(s string) string { return s }
	req := &Request{Action: "DescribeInstances", Principal: Principal{AccountID: "000000000001"}, pageKey: []byte("k")}
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		req.Params = url.Values{"MaxResults": {"5"}}
		if token != "" {
			req.Params.Set("NextToken", token)
		}
		pg, err := req.Page(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		page, next := Paginate(keys, id, pg)
		got = append(got, page...)
		if next == "" {
			if pages != 4 {
				t.Errorf("%d pages", pages+1)
			}
			break
		}
		token = next
	}
	if !reflect.DeepEqual(got, keys) {
		t.Errorf("paged %v", got)
	}

	good := Page{key: req.pageKey, action: req.Action, account: req.Principal.AccountID}.NextToken("c")
	bad := []struct{ name, tok string }{
		{"garbage", "!!!"},
		{"short", "AQ"},
		{"flipped", good[:len(good)-2] + flip(good[len(good)-2])},
		{"other action", Page{key: req.pageKey, action: "DescribeImages", account: "000000000001"}.NextToken("c")},
		{"other account", Page{key: req.pageKey, action: req.Action, account: "000000000002"}.NextToken("c")},
		{"other key", Page{key: []byte("x"), action: req.Action, account: "000000000001"}.NextToken("c")},
	}
	for _, b := range bad {
		req.Params = url.Values{"NextToken": {b.tok}}
		if _, err := req.Page(0, 0); code(err) != CodeInvalidParameterValue || !strings.Contains(err.Error(), "Invalid NextToken") {
			t.Errorf("%s token: %v", b.name, err)
		}
	}
	for _, mr := range []string{"4", "1001", "x"} {
		req.Params = url.Values{"MaxResults": {mr}}
		if _, err := req.Page(0, 0); code(err) != CodeInvalidParameterValue {
			t.Errorf("MaxResults=%s: %v", mr, err)
		}
	}
	req.Params = url.Values{"MaxResults": {"1000"}}
	if pg, err := req.Page(0, 0); err != nil || pg.Max != 1000 {
		t.Errorf("MaxResults=1000: %v %v", pg, err)
	}
}

func flip(c byte) string {
	if c == 'A' {
		return "B"
	}
	return "A"
}
