"""The web UI (`tuneboard webui`) and the browser chat page (`tuneboard webchat`).

Interface layer: writes a YAML and runs `tuneboard train|eval|export` as a subprocess; chat uses ChatEngine.
"""
