package main

// pxeCommands lists the pxe subcommands.
func pxeCommands() []command {
	return nil
}
