from django.urls import path

from . import views

app_name = "catalog"

urlpatterns = [
    path("", views.catalog_home, name="home"),
    path("garments/<int:pk>/", views.garment_detail, name="garment"),
]

# The merchant area's garment pages; ``tryon.urls`` adds the model-shot pages to the same
# ``merchant`` namespace.
merchant_urlpatterns = [
    path("", views.merchant_home, name="home"),
    path("garments/new/", views.merchant_garment_create, name="garment_create"),
    path("garments/<int:pk>/edit/", views.merchant_garment_edit, name="garment_edit"),
    path("garments/<int:pk>/delete/", views.merchant_garment_delete, name="garment_delete"),
    path("garments/<int:pk>/mask/", views.merchant_garment_mask, name="garment_mask"),
    path(
        "garments/<int:pk>/mask.png",
        views.merchant_garment_mask_file,
        name="garment_mask_file",
    ),
]
