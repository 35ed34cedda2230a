package tui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	"ironbark/installer/frontend"
)

// InstallerConfig is what the frontend installer's screens work with.
type InstallerConfig struct {
	Answers frontend.Answers // where the screens start (frontend.Defaults())
	Machine frontend.Machine // the NICs and disks to pick from
	Need    frontend.Need    // the appliance's size and the rolls on the medium
	// Install runs the install (frontend.Install with the medium and a
	// log); report may be called from any goroutine.
	Install func(ctx context.Context, a frontend.Answers, report func(frontend.Progress)) error
	// LogTail returns the install log's last n lines (the failure screen).
	LogTail func(n int) []string
	// SavePath is where `s` on the summary saves the answers ("" : no saving).
	SavePath string
}

type rowKind int

const (
	rowText rowKind = iota
	rowSecret
	rowChoice // pick one of choices (interfaces, disks, DHCP yes/no)
	rowCheck  // a roll to install, on or off
)

type choice struct{ value, label string }

// row is one line of a screen: a field of the answers (or the password
// confirmation, or one roll).
type row struct {
	kind    rowKind
	field   frontend.Field
	label   string
	input   textinput.Model
	choices []choice
	sel     int
	checked bool
	err     string // why the value as typed is wrong
	hidden  func(a *frontend.Answers) bool
}

type screen struct {
	title string
	help  string
	rows  []*row
	focus int
	// summary is the last screen: the answers and what the install does.
	summary bool
}

type installerState int

const (
	stateEditing installerState = iota
	stateInstalling
	stateFailed
	stateDone
)

// Installer is the frontend installer's screens: cluster, public network,
// private network, time, admin, disk, rolls, summary; then the install's
// progress and its end. Esc goes back on every screen.
type Installer struct {
	cfg     InstallerConfig
	a       frontend.Answers
	screens []*screen
	cur     int
	width   int
	state   installerState
	status  string
	prog    frontend.Progress
	err     error
	events  chan tea.Msg
	confirm *row // the password confirmation row
	// Quit is set when the operator leaves without installing.
	Quit bool
	// Installed is set when the install finished.
	Installed bool
}

type progressMsg frontend.Progress
type doneMsg struct{ err error }

func (m *Installer) waitEvent() tea.Cmd {
	ch := m.events
	return func() tea.Msg { return <-ch }
}

// NewInstaller builds the screens from the machine's NICs and disks.
func NewInstaller(cfg InstallerConfig) (*Installer, error) {
	nics, err := cfg.Machine.NICs()
	if err != nil {
		return nil, err
	}
	disks, err := cfg.Machine.Disks()
	if err != nil {
		return nil, err
	}
	if len(nics) == 0 {
		return nil, errors.New("no network interface found: the frontend needs a public and a private one")
	}
	if len(disks) == 0 {
		return nil, errors.New("no disk found to install on")
	}
	m := &Installer{cfg: cfg, a: cfg.Answers}
	if m.a.Version == 0 {
		m.a = frontend.Defaults()
	}
	var nicChoices, diskChoices []choice
	for _, n := range nics {
		link := "no link"
		if n.Carrier {
			link = "link up"
		}
		nicChoices = append(nicChoices, choice{n.Name, fmt.Sprintf("%-10s %s  %s", n.Name, n.MAC, link)})
	}
	for _, d := range disks {
		diskChoices = append(diskChoices, choice{d.Path, fmt.Sprintf("%-14s %9s  %s", shorten(d.Path, 24), humanBytes(d.Size), d.Model)})
	}
	// Defaults the machine suggests: the first NIC with link is public,
	// the next one private; the first disk.
	if m.a.Public.Interface == "" {
		m.a.Public.Interface = nics[0].Name
	}
	if m.a.Private.Interface == "" && len(nics) > 1 {
		m.a.Private.Interface = nics[1].Name
	}
	if m.a.Disk.Device == "" {
		m.a.Disk.Device = disks[0].Path
	}
	static := func(a *frontend.Answers) bool { return a.Public.DHCP }
	m.confirm = m.newRow(rowSecret, "", "Password again")
	pw := m.newRow(rowSecret, "admin.password", "")
	rolls := []*row{}
	for _, r := range cfg.Need.Rolls {
		rr := m.newRow(rowCheck, "", r)
		rr.checked = slices.Contains(m.a.Rolls, r)
		rolls = append(rolls, rr)
	}
	if len(rolls) == 0 {
		rolls = append(rolls, m.newRow(rowText, "rolls", ""))
	}
	m.screens = []*screen{
		{title: "Cluster", help: "The cluster's name, the frontend's public name, who runs it.",
			rows: []*row{m.newRow(rowText, "cluster.name", ""), m.newRow(rowText, "cluster.fqdn", ""), m.newRow(rowText, "cluster.contact", "")}},
		{title: "Public network", help: "The interface users and the EC2 API reach the frontend on.",
			rows: []*row{m.choiceRow("public.interface", nicChoices),
				m.choiceRow("public.dhcp", []choice{{"false", "no: a static address"}, {"true", "yes: DHCP"}}),
				hide(m.newRow(rowText, "public.address", ""), static), hide(m.newRow(rowText, "public.netmask", ""), static),
				hide(m.newRow(rowText, "public.gateway", ""), static), hide(m.newRow(rowText, "public.dns", ""), static)}},
		{title: "Private network", help: "The cluster's network: nodes PXE-boot and are installed on it (cluster0).",
			rows: []*row{m.choiceRow("private.interface", nicChoices), m.newRow(rowText, "private.address", ""),
				m.newRow(rowText, "private.netmask", ""), m.newRow(rowText, "private.nodes", "")}},
		{title: "Time", help: "The frontend's time zone and NTP servers (nodes take time from the frontend).",
			rows: []*row{m.newRow(rowText, "time.zone", ""), m.newRow(rowText, "time.ntp", "")}},
		{title: "Administrator", help: "The admin's password and SSH key for the frontend.",
			rows: []*row{pw, m.confirm, m.newRow(rowText, "admin.sshKey", "")}},
		{title: "Disk", help: "The disk the frontend is installed on: EVERYTHING ON IT IS ERASED.",
			rows: []*row{m.choiceRow("disk.device", diskChoices), m.newRow(rowText, "disk.dataSize", "Data size (or rest)")}},
		{title: "Rolls", help: "The rolls to install (space toggles).", rows: rolls},
		{title: "Summary", summary: true},
	}
	for _, s := range m.screens {
		m.focusRow(s, firstVisible(s, &m.a))
	}
	return m, nil
}

// shorten keeps the end of a long path, which tells disks apart.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n+3:]
}

func hide(r *row, h func(a *frontend.Answers) bool) *row { r.hidden = h; return r }

func (m *Installer) newRow(k rowKind, path, label string) *row {
	r := &row{kind: k, label: label}
	if path != "" {
		f, ok := frontend.FieldByPath(path)
		if !ok {
			panic("tui: no answer field " + path)
		}
		r.field = f
		if r.label == "" {
			r.label = f.Label
		}
	}
	ti := textinput.New()
	ti.Prompt = ""
	ti.CharLimit = 256
	ti.Width = 40
	ti.Cursor.SetMode(cursor.CursorStatic) // no blinking: a serial console redraws every blink
	if k == rowSecret {
		ti.EchoMode = textinput.EchoPassword
		ti.EchoCharacter = '*'
	}
	if path != "" && k != rowSecret {
		ti.SetValue(r.field.Get(&m.a))
	}
	r.input = ti
	return r
}

func (m *Installer) choiceRow(path string, cs []choice) *row {
	r := m.newRow(rowChoice, path, "")
	r.choices = cs
	cur := r.field.Get(&m.a)
	for i, c := range cs {
		if c.value == cur {
			r.sel = i
		}
	}
	return r
}

func (r *row) visible(a *frontend.Answers) bool { return r.hidden == nil || !r.hidden(a) }

func firstVisible(s *screen, a *frontend.Answers) int {
	for i, r := range s.rows {
		if r.visible(a) {
			return i
		}
	}
	return 0
}

func (m *Installer) focusRow(s *screen, i int) {
	for j, r := range s.rows {
		if j == i {
			r.input.Focus()
		} else {
			r.input.Blur()
		}
	}
	s.focus = i
}

// move focuses the next (+1) or previous (-1) visible row; it reports
// false at either end.
func (m *Installer) move(s *screen, d int) bool {
	for i := s.focus + d; i >= 0 && i < len(s.rows); i += d {
		if s.rows[i].visible(&m.a) {
			m.focusRow(s, i)
			return true
		}
	}
	return false
}

// set stores what a row holds into the answers, keeping why it is wrong.
func (m *Installer) set(r *row) {
	r.err = ""
	switch r.kind {
	case rowCheck:
		var rolls []string
		for _, x := range m.screens[6].rows {
			if x.kind == rowCheck && x.checked {
				rolls = append(rolls, x.label)
			}
		}
		m.a.Rolls = rolls
		return
	case rowChoice:
		if err := r.field.Set(&m.a, r.choices[r.sel].value); err != nil {
			r.err = err.Error()
		}
		return
	}
	if r == m.confirm {
		return
	}
	if err := r.field.Set(&m.a, r.input.Value()); err != nil {
		r.err = err.Error()
	}
}

// Answers returns the answers as the screens hold them.
func (m *Installer) Answers() frontend.Answers { return m.a }

// Init implements tea.Model.
func (m *Installer) Init() tea.Cmd { return nil }

// Update implements tea.Model.
func (m *Installer) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width = msg.Width
		return m, nil
	case progressMsg:
		m.prog = frontend.Progress(msg)
		return m, m.waitEvent()
	case doneMsg:
		if msg.err != nil {
			m.state, m.err = stateFailed, msg.err
		} else {
			m.state, m.Installed = stateDone, true
		}
		return m, nil
	case tea.KeyMsg:
		if msg.Type == tea.KeyCtrlC {
			if m.state != stateInstalling {
				m.Quit = true
				return m, tea.Quit
			}
			m.status = "the install is running: wait for it to end"
			return m, nil
		}
		switch m.state {
		case stateInstalling:
			return m, nil
		case stateFailed:
			switch msg.String() {
			case "esc":
				m.state, m.err, m.status = stateEditing, nil, "back at the summary: fix the answers and install again"
			case "q":
				m.Quit = true
				return m, tea.Quit
			}
			return m, nil
		case stateDone:
			if msg.Type == tea.KeyEnter {
				return m, tea.Quit
			}
			return m, nil
		}
		return m.updateEditing(msg)
	}
	s := m.screens[m.cur]
	if !s.summary && len(s.rows) > 0 {
		r := s.rows[s.focus]
		var cmd tea.Cmd
		r.input, cmd = r.input.Update(msg)
		return m, cmd
	}
	return m, nil
}

func (m *Installer) updateEditing(k tea.KeyMsg) (tea.Model, tea.Cmd) {
	s := m.screens[m.cur]
	m.status = ""
	switch k.String() {
	case "esc":
		if m.cur == 0 {
			m.status = "this is the first screen (ctrl+c leaves the installer)"
			return m, nil
		}
		m.cur--
		return m, nil
	}
	if s.summary {
		switch k.String() {
		case "enter":
			if err := frontend.Validate(&m.a, m.cfg.Machine, m.cfg.Need); err != nil {
				m.status = "the answers have problems: go back (Esc) and fix them"
				return m, nil
			}
			return m, m.startInstall()
		case "s":
			m.save()
		}
		return m, nil
	}
	r := s.rows[s.focus]
	switch k.String() {
	case "tab", "down":
		m.move(s, 1)
		return m, nil
	case "shift+tab", "up":
		m.move(s, -1)
		return m, nil
	case "enter":
		if !m.move(s, 1) {
			m.next()
		}
		return m, nil
	}
	switch r.kind {
	case rowChoice:
		switch k.String() {
		case "left", "h":
			r.sel = (r.sel + len(r.choices) - 1) % len(r.choices)
		case "right", "l", " ":
			r.sel = (r.sel + 1) % len(r.choices)
		}
		m.set(r)
		return m, nil
	case rowCheck:
		if k.String() == " " || k.String() == "x" {
			r.checked = !r.checked
			m.set(r)
		}
		return m, nil
	}
	var cmd tea.Cmd
	r.input, cmd = r.input.Update(k)
	m.set(r)
	return m, cmd
}

// next leaves the screen when its answers are good: each field as typed,
// and what the whole check says about this screen's fields.
func (m *Installer) next() {
	s := m.screens[m.cur]
	bad := false
	paths := map[string]*row{}
	for _, r := range s.rows {
		if !r.visible(&m.a) {
			r.err = ""
			continue
		}
		m.set(r)
		if r.field.Path != "" {
			paths[r.field.Path] = r
		}
	}
	if m.cur == 4 { // the administrator: the password twice
		pw := s.rows[0].input.Value()
		if m.a.Admin.PasswordHash == "" || pw != "" {
			if pw != m.confirm.input.Value() {
				m.confirm.err = "the two passwords differ"
			}
		}
	}
	var errs frontend.Errors
	if err := frontend.Validate(&m.a, m.cfg.Machine, m.cfg.Need); err != nil && !errors.As(err, &errs) {
		m.status = err.Error()
		return
	}
	for _, e := range errs {
		if r, ok := paths[e.Path]; ok && r.err == "" {
			r.err = e.Msg
		}
	}
	if m.cur == 6 && len(m.a.Rolls) == 0 {
		m.status = "choose at least one roll"
		return
	}
	for _, r := range s.rows {
		bad = bad || (r.err != "" && r.visible(&m.a))
	}
	if bad {
		m.status = "fix the fields marked ! (the reason is under each)"
		for i, r := range s.rows {
			if r.err != "" && r.visible(&m.a) {
				m.focusRow(s, i)
				break
			}
		}
		return
	}
	m.cur++
}

func (m *Installer) save() {
	if m.cfg.SavePath == "" {
		m.status = "no place to save answers on this medium"
		return
	}
	b, err := frontend.Marshal(m.a)
	if err == nil {
		err = os.WriteFile(m.cfg.SavePath, b, 0o600)
	}
	if err != nil {
		m.status = "save: " + err.Error()
		return
	}
	m.status = "answers saved to " + m.cfg.SavePath + " (ironbark install --answers " + m.cfg.SavePath + ")"
}

func (m *Installer) startInstall() tea.Cmd {
	m.state = stateInstalling
	m.events = make(chan tea.Msg, 64)
	a := m.a
	go func() {
		err := m.cfg.Install(context.Background(), a, func(p frontend.Progress) {
			select {
			case m.events <- progressMsg(p):
			default: // the screen is behind: drop a progress update, never block the install
			}
		})
		m.events <- doneMsg{err}
	}()
	return m.waitEvent()
}

var (
	focusStyle = lipgloss.NewStyle().Bold(true)
	okStyle    = lipgloss.NewStyle().Foreground(lipgloss.Color("10"))
)

// View implements tea.Model.
func (m *Installer) View() string {
	var b strings.Builder
	switch m.state {
	case stateInstalling:
		m.viewProgress(&b)
	case stateFailed:
		m.viewFailed(&b)
	case stateDone:
		b.WriteString(titleStyle.Render("ironbark frontend installer: done") + "\n\n")
		b.WriteString(okStyle.Render(fmt.Sprintf("%s is installed on %s.", m.a.Cluster.FQDN, m.a.Disk.Device)) + "\n\n")
		b.WriteString("Remove the install medium. Enter reboots into the frontend.\n")
	default:
		s := m.screens[m.cur]
		fmt.Fprintf(&b, "%s\n", titleStyle.Render(fmt.Sprintf("ironbark frontend installer  [%d/%d] %s", m.cur+1, len(m.screens), s.title)))
		if s.summary {
			m.viewSummary(&b)
		} else {
			b.WriteString(hintStyle.Render(s.help) + "\n\n")
			for i, r := range s.rows {
				if !r.visible(&m.a) {
					continue
				}
				m.viewRow(&b, r, i == s.focus)
			}
			b.WriteString("\n" + hintStyle.Render("Tab/Down: next field · Enter on the last field: Next · Esc: Back") + "\n")
		}
	}
	if m.status != "" {
		b.WriteString(errStyle.Render(m.status) + "\n")
	}
	return fit(b.String(), m.width)
}

func (m *Installer) viewRow(b *strings.Builder, r *row, focused bool) {
	mark := "  "
	if focused {
		mark = "> "
	}
	if r.err != "" {
		mark = "! "
	}
	label := fmt.Sprintf("%s%-20s ", mark, r.label)
	if focused {
		label = focusStyle.Render(label)
	}
	var val string
	switch r.kind {
	case rowChoice:
		val = "< " + r.choices[r.sel].label + " >"
	case rowCheck:
		box := "[ ]"
		if r.checked {
			box = "[x]"
		}
		val = box
	default:
		val = r.input.View()
	}
	b.WriteString(label + val + "\n")
	if r.err != "" {
		for _, l := range strings.Split(wrap(r.err, 74), "\n") {
			b.WriteString("    " + errStyle.Render(l) + "\n")
		}
	}
}

func (m *Installer) viewSummary(b *strings.Builder) {
	b.WriteString(hintStyle.Render("Check the answers. Enter installs, s saves them as an answer file, Esc goes back.") + "\n\n")
	a := m.a
	pub := "DHCP"
	if !a.Public.DHCP {
		pub = fmt.Sprintf("%s/%s gw %s dns %s", a.Public.Address, a.Public.Netmask, orDash(a.Public.Gateway), orDash(strings.Join(a.Public.DNS, ",")))
	}
	lines := [][2]string{
		{"Cluster", fmt.Sprintf("%s  %s  %s", a.Cluster.Name, a.Cluster.FQDN, a.Cluster.Contact)},
		{"Public", a.Public.Interface + "  " + pub},
		{"Private (cluster0)", fmt.Sprintf("%s  %s/%s  %d nodes", a.Private.Interface, a.Private.Address, a.Private.Netmask, a.Private.Nodes)},
		{"Time", a.Time.Zone + "  ntp " + orDash(strings.Join(a.Time.NTP, ","))},
		{"Admin", "password set" + map[bool]string{true: ", SSH key", false: ""}[a.Admin.SSHKey != ""]},
		{"Disk", a.Disk.Device + " (ERASED)  data " + a.Disk.DataSize},
		{"Rolls", strings.Join(a.Rolls, ", ")},
	}
	for _, l := range lines {
		fmt.Fprintf(b, "  %-20s %s\n", l[0], l[1])
	}
	if err := frontend.Validate(&m.a, m.cfg.Machine, m.cfg.Need); err != nil {
		var errs frontend.Errors
		b.WriteString("\n")
		if errors.As(err, &errs) {
			for i, e := range errs {
				if i == 6 {
					fmt.Fprintf(b, "  ... and %d more\n", len(errs)-6)
					break
				}
				b.WriteString("  " + errStyle.Render("! "+e.Error()) + "\n")
			}
		} else {
			b.WriteString("  " + errStyle.Render("! "+err.Error()) + "\n")
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Bar draws a progress bar of width cells, ASCII so a serial console
// shows it.
func Bar(done, total int64, width int) string {
	if total <= 0 {
		return "[" + strings.Repeat(".", width) + "]"
	}
	n := int(int64(width) * min(done, total) / total)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

func (m *Installer) viewProgress(b *strings.Builder) {
	p := m.prog
	b.WriteString(titleStyle.Render("ironbark frontend installer: installing") + "\n\n")
	fmt.Fprintf(b, "Installing %s onto %s\n\n", m.a.Cluster.FQDN, m.a.Disk.Device)
	fmt.Fprintf(b, "Step %d of %d: %s\n", p.Index, p.Of, p.Step)
	if p.Total > 0 {
		pct := 100 * p.Done / p.Total
		fmt.Fprintf(b, "%s %3d%%\n", Bar(p.Done, p.Total, 50), pct)
		fmt.Fprintf(b, "%s of %s written, %s/s, ETA %s\n", humanBytes(p.Done), humanBytes(p.Total), humanBytes(int64(p.Rate)),
			p.ETA.Round(time.Second))
	}
	if p.Of > 0 {
		fmt.Fprintf(b, "\nAll steps %s\n", Bar(int64(p.Index-1), int64(p.Of), 50))
	}
}

func (m *Installer) viewFailed(b *strings.Builder) {
	b.WriteString(errStyle.Render("ironbark frontend installer: the install FAILED") + "\n\n")
	b.WriteString(wrap(m.err.Error(), 78) + "\n\n")
	if m.cfg.LogTail != nil {
		b.WriteString(headStyle.Render("The log's last lines:") + "\n")
		for _, l := range m.cfg.LogTail(8) {
			b.WriteString(l + "\n")
		}
	}
	b.WriteString("\n" + hintStyle.Render("Esc: back to the summary · q: leave the installer") + "\n")
}

func wrap(s string, w int) string {
	var out []string
	for len(s) > w {
		i := strings.LastIndex(s[:w], " ")
		if i <= 0 {
			i = w
		}
		out = append(out, s[:i])
		s = strings.TrimLeft(s[i:], " ")
	}
	return strings.Join(append(out, s), "\n")
}

// fit cuts lines to the terminal's width (80 columns on a serial console).
func fit(s string, width int) string {
	if width <= 0 {
		return s
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if lipgloss.Width(l) > width {
			lines[i] = lipgloss.NewStyle().MaxWidth(width).Render(l)
		}
	}
	return strings.Join(lines, "\n")
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
