// Package roll reads rolls (a manifest, Rocks-style node and graph files,
// Debian package names and files, signed with ed25519), merges the enabled
// rolls' graphs, resolves host attributes along Rocks' chain (global < os <
// appliance < rack < host) and walks the graph for an appliance into a
// Profile: the ordered packages, files and post scripts that the appliance
// builder (images/appliance) lays into a disk image.
//
// A roll is a directory (or an archive of one, see Create) holding:
//
//	roll.xml (or roll-NAME.xml)
//	    <roll name="xen" version="1.0" release="1" arch="x86_64" os="debian">
//	      <summary>Xen dom0</summary>
//	      <attr name="xen_dom0_mem" value="1024M"/>       global default
//	      <appliance name="compute" node="compute">       walk root
//	        <attr name="xen" value="yes"/>                appliance default
//	      </appliance>
//	    </roll>
//	nodes/NAME.xml          <kickstart> with <description>, <package>
//	                        (Debian names, whitespace separated), <file
//	                        name= perms= owner= [mode="append"] [src=]>,
//	                        <post [interpreter=]>
//	nodes/extend-NAME.xml   adds its items after NAME's
//	nodes/replace-NAME.xml  replaces NAME's items
//	graphs/default/*.xml    <graph> with <edge from= to= cond=> (or <to>
//	                        and <from> children, whose guards AND with the
//	                        edge's) and <order head= tail=> (HEAD, TAIL)
//	files/...               shipped files, for <file src="files/...">
//
// Every element may carry arch=, os=, release= (comma lists, ORed) and
// cond= (see Cond), all ANDed. File contents, file names and post bodies
// are Go templates over the host's attributes: {{.hostname}} (a missing
// attribute is an error) or {{attr "name" "default"}}.
//
// Use: Load (an fs.FS, e.g. a go:embed'ed builtin roll through fs.Sub) or
// Open (a directory or archive) or OpenVerified (an archive checked
// against trusted keys) gives a *Roll; Merge(rolls...) gives a *Graph;
// Graph.Profile(appliance, attrs) gives the Profile; Graph.DOT draws it.
package roll
