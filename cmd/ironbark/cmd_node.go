package main

// nodeCommands lists the node subcommands.
func nodeCommands() []command {
	return nil
}
