"""The ground layer: errors with one root, atomic files, redaction of secrets and the choices
that settings, CLI and widgets are built from. Every layer may import it; it imports nothing of ours."""
