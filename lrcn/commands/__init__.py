"""The commands of `lrcn`, one module each: ``register(subparsers)`` adds its parser(s), and the
function it sets runs the command. lrcn.cli only parses and dispatches. Commands build on the
library folders (data, models, decoding, metrics, train, report) and on lrcn.run; no library
module imports a command. Shared by commands: lrcn.commands.options."""
