"""The API's HTML rendering for a browser: DRF's browsable API, under the site's
Content-Security-Policy."""

from rest_framework import renderers


class BrowsableAPIRenderer(renderers.BrowsableAPIRenderer):
    """DRF's browsable API less the two parts of its page that the policy refuses: an inline
    ``<style>`` of Pygments' colours (for code in Markdown descriptions, which DRF renders only
    with the markdown package, not installed here) and the "Extra Actions" menu, which carries
    a style attribute (its actions are listed at /api/docs/)."""

    def get_context(self, data, accepted_media_type, renderer_context):
        context = super().get_context(data, accepted_media_type, renderer_context)
        context["code_style"] = None
        context["extra_actions"] = None
        return context
