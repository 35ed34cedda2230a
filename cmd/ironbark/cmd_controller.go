package main

// controllerCommands lists the controller subcommands.
func controllerCommands() []command {
	return nil
}
