from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path

from catalog.urls import merchant_urlpatterns

from . import views

shopper_urlpatterns = (
    [
        path("", views.my_tryons, name="mine"),
        path("garments/<int:garment_pk>/", views.tryon_create, name="create"),
        path("<uuid:job_id>/", views.job_page, name="job"),
        path("<uuid:job_id>/status/", views.job_status, name="job_status"),
        path("<uuid:job_id>/cancel/", views.job_cancel, name="job_cancel"),
        path("<uuid:job_id>/delete/", views.job_delete, name="job_delete"),
    ],
    "tryon",
)

urlpatterns = [
    path("tryon/", include(shopper_urlpatterns)),
    path("", include("catalog.urls")),
    path("merchant/", include(merchant_urlpatterns)),
    path("accounts/", include("django.contrib.auth.urls")),
    path("accounts/welcome/", views.after_login, name="after_login"),
    path("admin/", admin.site.urls),
    path("healthz", views.healthz, name="healthz"),
    path("files/jobs/<uuid:job_id>/<str:field>/", views.job_file, name="job_file"),
    path("files/results/<int:result_id>/<str:field>/", views.result_file, name="result_file"),
]

# Only for `make run` (DEBUG): production serves media from object storage or the proxy.
urlpatterns += static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
