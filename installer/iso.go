package installer

import (
	"maps"

	"ironbark/images/iso"
)

// ISOSpec makes s the frontend's install ISO: its default entry is the
// frontend installer (unattended when answers names an answer file,
// which goes on the ISO), the node installer stays an entry, and the
// frontend appliance image rides along as images/frontend.img.
func ISOSpec(s iso.Spec, frontendImage, answers string) iso.Spec {
	extra := map[string]string{"images/frontend.img": frontendImage}
	args := ArgMode + "=frontend"
	if answers != "" {
		extra["answers.yaml"] = answers
		args += " " + ArgAnswers + "=iso:/answers.yaml"
	}
	maps.Copy(extra, s.Extra)
	s.Extra = extra
	s.Entries = []iso.Entry{
		{Label: "frontend", Title: "Install the ironbark frontend", Args: args},
		{Label: "node", Title: "Node installer (nodes normally PXE-boot it)"},
	}
	return s
}
