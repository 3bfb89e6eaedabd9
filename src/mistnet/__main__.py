from mistnet.cli import run

run()
