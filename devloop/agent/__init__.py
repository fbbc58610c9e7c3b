"""The agent: the stdlib-only program devloop runs inside the target (Python 3.8+).

It is shipped as a zipapp (see `devloop.core.agent_bundle`): these modules go into the zip as the
package `devloop_agent`, so they import each other with relative imports only and never import
anything from `devloop` outside this folder. The local target runs the same bundle unpacked into
a folder (so Python keeps its compiled modules); remote targets get the one-file zip.
"""
