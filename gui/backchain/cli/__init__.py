"""The command line: parser, options, commands, output, confirmation and terminal progress."""
