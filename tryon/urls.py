from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from catalog.api import GarmentViewSet
from catalog.urls import merchant_urlpatterns as garment_urlpatterns

from . import admin_models, api, merchant_views, sdapi, sdapi_info, views

shopper_urlpatterns = (
    [
        path("", views.my_tryons, name="mine"),
        path("delete-my-data/", views.delete_my_data, name="delete_my_data"),
        path("garments/<int:garment_pk>/", views.tryon_create, name="create"),
        path("<uuid:job_id>/", views.job_page, name="job"),
        path("<uuid:job_id>/status/", views.job_status, name="job_status"),
        path("<uuid:job_id>/cancel/", views.job_cancel, name="job_cancel"),
        path("<uuid:job_id>/delete/", views.job_delete, name="job_delete"),
    ],
    "tryon",
)

# The merchant area: the catalog's garment pages and, on each garment, its model shots.
merchant_urlpatterns = (
    [
        *garment_urlpatterns,
        path(
            "garments/<int:pk>/shots/", merchant_views.merchant_garment_shots, name="garment_shots"
        ),
        path(
            "garments/<int:pk>/shots/photo/",
            merchant_views.merchant_garment_photo_shot,
            name="garment_photo_shot",
        ),
        path(
            "garments/<int:pk>/gallery/",
            merchant_views.merchant_garment_gallery,
            name="garment_gallery",
        ),
        path(
            "garments/<int:pk>/gallery/live/",
            merchant_views.merchant_garment_gallery_live,
            name="garment_gallery_live",
        ),
        path(
            "garments/<int:pk>/results/<int:result_pk>/publish/",
            merchant_views.merchant_result_publish,
            name="result_publish",
        ),
        path(
            "garments/<int:pk>/jobs/<uuid:job_id>/discard/",
            merchant_views.merchant_job_discard,
            name="job_discard",
        ),
        path(
            "garments/<int:pk>/jobs/<uuid:job_id>/rerun/",
            merchant_views.merchant_job_rerun,
            name="job_rerun",
        ),
    ],
    "merchant",
)

router = DefaultRouter()
router.register("garments", GarmentViewSet, basename="garment")
router.register("tryons", api.TryOnViewSet, basename="tryon")
router.register("results", api.ResultViewSet, basename="result")

api_urlpatterns = [
    path("", include(router.urls)),
    path("poses/", api.poses, name="api-poses"),
    path("scenes/", api.scenes, name="api-scenes"),
    path("samplers/", api.samplers, name="api-samplers"),
    path("models/", api.models, name="api-models"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI with its start-up script at ?script, not inline, as the Content-Security-Policy
    # wants; the page without its inline style (templates/api/swagger_ui.html).
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-schema", template_name="api/swagger_ui.html"
        ),
        name="api-docs",
    ),
    # Anything else under /api/ (an id of the wrong shape, a typo) answers in the API's JSON.
    # Only paths ending in a slash: Django still redirects a missing slash to the real one.
    re_path(r"^.*/$", api.not_found),
]

sdapi_urlpatterns = [
    path("txt2img", sdapi.txt2img),
    path("img2img", sdapi.img2img),
    path("progress", sdapi.progress),
    path("interrupt", sdapi.interrupt),
    path("png-info", sdapi.png_info),
    path("samplers", sdapi.samplers),
    path("schedulers", sdapi_info.schedulers),
    path("upscalers", sdapi_info.upscalers),
    path("latent-upscale-modes", sdapi_info.latent_upscale_modes),
    path("sd-models", sdapi_info.sd_models),
    path("sd-vae", sdapi_info.sd_vae),
    path("loras", sdapi_info.loras),
    path("embeddings", sdapi_info.embeddings),
    path("options", sdapi_info.options),
    path("scripts", sdapi_info.scripts),
    path("memory", sdapi_info.memory),
    path("cmd-flags", sdapi_info.cmd_flags),
    path("extensions", sdapi_info.extensions),
    path("refresh-checkpoints", sdapi_info.refresh),
    path("refresh-loras", sdapi_info.refresh),
    path("refresh-vae", sdapi_info.refresh),
    path("refresh-embeddings", sdapi_info.refresh),
    # Anything else answers FastAPI's JSON 404, as the WebUI does, never an HTML page.
    re_path(r"^(?P<path>.*)$", sdapi_info.not_found),
]

# The ControlNet extension's own paths, which WebUI clients call as they are.
controlnet_urlpatterns = [
    path("model_list", sdapi_info.controlnet_model_list),
    path("module_list", sdapi_info.controlnet_module_list),
    path("version", sdapi_info.controlnet_version),
    path("settings", sdapi_info.controlnet_settings),
    re_path(r"^(?P<path>.*)$", sdapi_info.not_found),
]

urlpatterns = [
    path("api/", include(api_urlpatterns)),
    path("sdapi/v1/", include(sdapi_urlpatterns)),
    path("controlnet/", include(controlnet_urlpatterns)),
    path("tryon/", include(shopper_urlpatterns)),
    path("", include("catalog.urls")),
    path("merchant/", include(merchant_urlpatterns)),
    path("accounts/", include("django.contrib.auth.urls")),
    path("accounts/welcome/", views.after_login, name="after_login"),
    path("admin/models/", admin_models.installed_models, name="admin_installed_models"),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("files/jobs/<uuid:job_id>/<str:field>/", views.job_file, name="job_file"),
    path("files/results/<int:result_id>/<str:field>/", views.result_file, name="result_file"),
]

# Only for `make run` (DEBUG): production serves media from object storage or the proxy.
urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
