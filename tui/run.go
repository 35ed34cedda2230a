package tui

import (
	"context"
	"errors"
	"io"
	"log/slog"

	tea "github.com/charmbracelet/bubbletea"

	"ironbark/installer/frontend"
)

// ErrQuit is returned when the operator leaves the installer without
// installing.
var ErrQuit = errors.New("installer left without installing")

// RunInstaller shows the installer's screens on in/out and installs from
// the medium. log receives the install log too (a file on the console's
// other side, or io.Discard).
func RunInstaller(ctx context.Context, in io.Reader, out io.Writer, m frontend.Machine, md frontend.Medium, savePath string, log io.Writer) (frontend.Answers, error) {
	l, err := md.Image.Layout()
	if err != nil {
		return frontend.Answers{}, err
	}
	rolls, err := md.Rolls()
	if err != nil {
		return frontend.Answers{}, err
	}
	ring := &LogRing{}
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(ring, log), nil))
	ui, err := NewInstaller(InstallerConfig{Answers: frontend.Defaults(), Machine: m,
		Need: frontend.Need{ImageSize: l.Size, Rolls: rolls}, SavePath: savePath, LogTail: ring.Tail,
		Install: func(ctx context.Context, a frontend.Answers, report func(frontend.Progress)) error {
			return frontend.Install(ctx, a, m, md, logger, report)
		}})
	if err != nil {
		return frontend.Answers{}, err
	}
	p := tea.NewProgram(ui, tea.WithInput(in), tea.WithOutput(out), tea.WithContext(ctx), tea.WithAltScreen())
	if _, err := p.Run(); err != nil {
		return ui.Answers(), err
	}
	if !ui.Installed {
		return ui.Answers(), ErrQuit
	}
	return ui.Answers(), nil
}
