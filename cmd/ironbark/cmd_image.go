package main

// imageCommands lists the image subcommands.
func imageCommands() []command {
	return nil
}
