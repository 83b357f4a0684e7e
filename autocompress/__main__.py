from autocompress.cli import main

main()
