"""Thin Typer commands over the library API: parse options, call one function, print."""
