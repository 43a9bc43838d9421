from vjfer.cli import main

main()
