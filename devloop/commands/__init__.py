"""One module per subcommand. Each defines:

    NAME = "run"            # the subcommand
    HELP = "one line for `devloop --help`"
    ORDER = 10              # position in the help listing
    def register(parser: argparse.ArgumentParser) -> None   # its flags, each with help text
    def run(args: argparse.Namespace) -> int                # the exit code

`devloop.cli` discovers them, so adding a command touches no shared file.
"""
